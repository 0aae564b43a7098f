//! The msgpack subset memberlist and serf put on the wire, written the way
//! hashicorp/go-msgpack writes it and read the way it reads it.
//!
//! What go-msgpack's `MsgpackHandle{}` (defaults, `WriteExt = false`) does,
//! checked against its source (v0.5.5 `codec/msgpack.go`, `encode.go`) and
//! against bytes produced by memberlist 0.2.2 + go-msgpack 0.5.5:
//! - a Go struct is a map keyed by the Go field names, **sorted** bytewise
//!   (`sfip`/`sfiSort`), with `omitempty` fields left out when zero;
//! - `string` and `[]byte` are both the old "raw" family: fixstr below 32
//!   bytes, then str16 (`0xda`), then str32 — never str8 (`0xd9`) and never
//!   bin, because str8/bin only exist when `WriteExt` is set;
//! - a nil `[]byte` (an ack without payload) is msgpack nil;
//! - unsigned ints take the smallest unsigned form (positive fixint, then
//!   `0xcc`..`0xcf`). Signed Go `int`s that are non-negative do the same in
//!   v0.5.x; go-msgpack v2 (memberlist ≥ 0.5.1) writes 128..=32767 as int16
//!   instead. Both read either form, so the writer here follows v0.5.x
//!   (what the golden vectors were produced with) and the reader accepts
//!   every integer width.
//!
//! The reader builds a [`Value`] tree first. It is bounded: nesting is
//! capped at [`DEPTH_MAX`], and a container's declared length is never
//! trusted for allocation (each element consumes at least one input byte,
//! so vectors only grow as input is actually read). Any byte string gives
//! a `Value` or an error, never a panic.

use super::error::WireError;

/// Deepest nesting of arrays and maps accepted. memberlist's deepest
/// message (serf's push/pull: map → array → map → array → map) needs 5.
pub const DEPTH_MAX: usize = 16;

/// Most values one [`Reader`] builds. A value costs ~32 bytes of memory
/// but can take one byte of input, so without a budget a 20 MiB push/pull
/// of fixints would make the tree ~30 times its size. Serf's push/pull for
/// a 10,000-node pool holds about 50,000 values.
pub const VALUES_MAX: usize = 1 << 20;

/// Elements reserved up front for a container, whatever its header claims.
const RESERVE_MAX: usize = 1024;

/// One decoded msgpack value, borrowing strings from the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    /// Any non-negative integer, whatever width it was written in.
    Uint(u64),
    /// A negative integer.
    Int(i64),
    Float(f64),
    /// str (fixstr/str8/str16/str32) or bin: go-msgpack writes `[]byte` as
    /// str and reads either.
    Bytes(&'a [u8]),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Ext(i8, &'a [u8]),
}

impl<'a> Value<'a> {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Uint(_) | Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Bytes(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Ext(..) => "ext",
        }
    }
}

/// Reads msgpack values one after another from a buffer.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    values: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            values: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Reads one complete value.
    pub fn value(&mut self) -> Result<Value<'a>, WireError> {
        self.value_at(0)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::TooLarge {
            what: "msgpack length",
            len: n,
            max: self.buf.len(),
        })?;
        if end > self.buf.len() {
            return Err(WireError::Truncated {
                need: end,
                have: self.buf.len(),
            });
        }
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn value_at(&mut self, depth: usize) -> Result<Value<'a>, WireError> {
        let offset = self.pos;
        self.values += 1;
        if self.values > VALUES_MAX {
            return Err(WireError::Msgpack {
                offset,
                reason: "more values than the decoder's budget",
            });
        }
        let tag = self.byte()?;
        Ok(match tag {
            0x00..=0x7f => Value::Uint(u64::from(tag)),
            0x80..=0x8f => self.map(usize::from(tag & 0x0f), depth, offset)?,
            0x90..=0x9f => self.array(usize::from(tag & 0x0f), depth, offset)?,
            0xa0..=0xbf => Value::Bytes(self.take(usize::from(tag & 0x1f))?),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 | 0xd9 => {
                let n = self.be(1)? as usize;
                Value::Bytes(self.take(n)?)
            }
            0xc5 | 0xda => {
                let n = self.be(2)? as usize;
                Value::Bytes(self.take(n)?)
            }
            0xc6 | 0xdb => {
                let n = self.be(4)? as usize;
                Value::Bytes(self.take(n)?)
            }
            0xc7 => {
                let n = self.be(1)? as usize;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.be(2)? as usize;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.be(4)? as usize;
                self.ext(n)?
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.be(8)?)),
            0xcc => Value::Uint(self.be(1)?),
            0xcd => Value::Uint(self.be(2)?),
            0xce => Value::Uint(self.be(4)?),
            0xcf => Value::Uint(self.be(8)?),
            0xd0 => signed(i64::from(self.be(1)? as u8 as i8)),
            0xd1 => signed(i64::from(self.be(2)? as u16 as i16)),
            0xd2 => signed(i64::from(self.be(4)? as u32 as i32)),
            0xd3 => signed(self.be(8)? as i64),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xdc => {
                let n = self.be(2)? as usize;
                self.array(n, depth, offset)?
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array(n, depth, offset)?
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.map(n, depth, offset)?
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map(n, depth, offset)?
            }
            0xe0..=0xff => Value::Int(i64::from(tag as i8)),
            0xc1 => {
                return Err(WireError::Msgpack {
                    offset,
                    reason: "reserved type byte 0xc1",
                })
            }
        })
    }

    fn ext(&mut self, n: usize) -> Result<Value<'a>, WireError> {
        let kind = self.byte()? as i8;
        Ok(Value::Ext(kind, self.take(n)?))
    }

    fn enter(&self, depth: usize, offset: usize) -> Result<(), WireError> {
        if depth >= DEPTH_MAX {
            return Err(WireError::Msgpack {
                offset,
                reason: "nesting deeper than the limit",
            });
        }
        Ok(())
    }

    fn array(&mut self, n: usize, depth: usize, offset: usize) -> Result<Value<'a>, WireError> {
        self.enter(depth, offset)?;
        // Each element takes at least one byte: never reserve more than
        // the input could hold, nor much at all before it is read.
        let mut items = Vec::with_capacity(n.min(self.buf.len() - self.pos).min(RESERVE_MAX));
        for _ in 0..n {
            items.push(self.value_at(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize, offset: usize) -> Result<Value<'a>, WireError> {
        self.enter(depth, offset)?;
        let mut entries =
            Vec::with_capacity(n.min((self.buf.len() - self.pos) / 2).min(RESERVE_MAX));
        for _ in 0..n {
            let key = self.value_at(depth + 1)?;
            let value = self.value_at(depth + 1)?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

fn signed(v: i64) -> Value<'static> {
    if v >= 0 {
        Value::Uint(v as u64)
    } else {
        Value::Int(v)
    }
}

/// Reads one value from the start of `buf`; returns it and the bytes used.
pub fn read_value(buf: &[u8]) -> Result<(Value<'_>, usize), WireError> {
    let mut reader = Reader::new(buf);
    let value = reader.value()?;
    Ok((value, reader.position()))
}

// ---------------------------------------------------------------- typed views

/// A decoded map seen as a Go struct: fields by name, missing fields zero,
/// unknown fields ignored (newer memberlist versions add fields), the last
/// of duplicate keys winning (as go-msgpack assigns them in order).
pub struct Fields<'v, 'a> {
    entries: &'v [(Value<'a>, Value<'a>)],
}

impl<'v, 'a> Fields<'v, 'a> {
    /// `what` names the struct in errors. A nil decodes as the zero struct,
    /// as go-msgpack leaves the target untouched for nil.
    pub fn of(value: &'v Value<'a>, what: &'static str) -> Result<Self, WireError> {
        match value {
            Value::Map(entries) => Ok(Fields { entries }),
            Value::Nil => Ok(Fields { entries: &[] }),
            _ => Err(WireError::Field {
                field: what,
                reason: "expected a map",
            }),
        }
    }

    pub fn get(&self, name: &str) -> Option<&'v Value<'a>> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, Value::Bytes(b) if *b == name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn uint(&self, name: &'static str, max: u64) -> Result<u64, WireError> {
        self.get(name).map_or(Ok(0), |v| uint(v, name, max))
    }

    pub fn int(&self, name: &'static str) -> Result<i64, WireError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(0),
            Some(Value::Uint(u)) => i64::try_from(*u).map_err(|_| WireError::Field {
                field: name,
                reason: "integer overflows int64",
            }),
            Some(Value::Int(i)) => Ok(*i),
            Some(_) => Err(WireError::Field {
                field: name,
                reason: "expected an integer",
            }),
        }
    }

    pub fn u32(&self, name: &'static str) -> Result<u32, WireError> {
        Ok(self.uint(name, u64::from(u32::MAX))? as u32)
    }

    pub fn u16(&self, name: &'static str) -> Result<u16, WireError> {
        Ok(self.uint(name, u64::from(u16::MAX))? as u16)
    }

    pub fn u8(&self, name: &'static str) -> Result<u8, WireError> {
        Ok(self.uint(name, u64::from(u8::MAX))? as u8)
    }

    pub fn u64(&self, name: &'static str) -> Result<u64, WireError> {
        self.uint(name, u64::MAX)
    }

    pub fn bool(&self, name: &'static str) -> Result<bool, WireError> {
        match self.get(name) {
            None | Some(Value::Nil) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(WireError::Field {
                field: name,
                reason: "expected a bool",
            }),
        }
    }

    pub fn bytes(&self, name: &'static str) -> Result<Vec<u8>, WireError> {
        self.get(name)
            .map_or(Ok(Vec::new()), |v| bytes(v, name).map(<[u8]>::to_vec))
    }

    pub fn string(&self, name: &'static str) -> Result<String, WireError> {
        self.get(name)
            .map_or(Ok(String::new()), |v| string(v, name))
    }
}

/// An unsigned integer field no larger than `max`.
pub fn uint(value: &Value<'_>, field: &'static str, max: u64) -> Result<u64, WireError> {
    match value {
        Value::Nil => Ok(0),
        Value::Uint(u) if *u <= max => Ok(*u),
        Value::Uint(_) => Err(WireError::Field {
            field,
            reason: "integer out of range",
        }),
        Value::Int(_) => Err(WireError::Field {
            field,
            reason: "negative integer for an unsigned field",
        }),
        _ => Err(WireError::Field {
            field,
            reason: "expected an integer",
        }),
    }
}

/// A `[]byte` field: str or bin, nil as empty.
pub fn bytes<'a>(value: &Value<'a>, field: &'static str) -> Result<&'a [u8], WireError> {
    match value {
        Value::Nil => Ok(&[]),
        Value::Bytes(b) => Ok(b),
        _ => Err(WireError::Field {
            field,
            reason: "expected a string or bytes",
        }),
    }
}

/// A `string` field. Go strings may hold any bytes; tribune's hold UTF-8,
/// and a name that is not UTF-8 is refused rather than altered.
pub fn string(value: &Value<'_>, field: &'static str) -> Result<String, WireError> {
    let raw = bytes(value, field)?;
    String::from_utf8(raw.to_vec()).map_err(|_| WireError::Field {
        field,
        reason: "string is not UTF-8",
    })
}

/// A slice field: an array (nil as empty).
pub fn array<'v, 'a>(
    value: Option<&'v Value<'a>>,
    field: &'static str,
) -> Result<&'v [Value<'a>], WireError> {
    match value {
        None | Some(Value::Nil) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(WireError::Field {
            field,
            reason: "expected an array",
        }),
    }
}

/// A map field (nil as empty).
pub fn map<'v, 'a>(
    value: Option<&'v Value<'a>>,
    field: &'static str,
) -> Result<&'v [(Value<'a>, Value<'a>)], WireError> {
    match value {
        None | Some(Value::Nil) => Ok(&[]),
        Some(Value::Map(entries)) => Ok(entries),
        Some(_) => Err(WireError::Field {
            field,
            reason: "expected a map",
        }),
    }
}

// ---------------------------------------------------------------- writer

pub fn write_nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

pub fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.push(if b { 0xc3 } else { 0xc2 });
}

/// The smallest unsigned form, as go-msgpack writes Go's unsigned types
/// (and, in v0.5.x, non-negative signed ones).
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    if v <= 0x7f {
        out.push(v as u8);
    } else if v <= u64::from(u8::MAX) {
        out.extend([0xcc, v as u8]);
    } else if v <= u64::from(u16::MAX) {
        out.push(0xcd);
        out.extend((v as u16).to_be_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(0xce);
        out.extend((v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend(v.to_be_bytes());
    }
}

/// A Go `int`: non-negative values as [`write_uint`], negative ones in the
/// smallest signed form.
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        write_uint(out, v as u64);
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else if v >= i64::from(i8::MIN) {
        out.extend([0xd0, v as i8 as u8]);
    } else if v >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend((v as i16).to_be_bytes());
    } else if v >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend((v as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend(v.to_be_bytes());
    }
}

/// A Go `string` or non-nil `[]byte`: the raw family without str8.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xda);
        out.extend((n as u16).to_be_bytes());
    } else {
        // Callers bound their inputs far below 4 GiB (see limits).
        out.push(0xdb);
        out.extend((n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// A `[]byte` that Go would hold as nil when empty (an ack's payload, a
/// node's meta): nil for empty, raw bytes otherwise.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.is_empty() {
        write_nil(out);
    } else {
        write_str(out, b);
    }
}

pub fn write_map_len(out: &mut Vec<u8>, n: usize) {
    container_len(out, n, 0x80, 0xde, 0xdf);
}

pub fn write_array_len(out: &mut Vec<u8>, n: usize) {
    container_len(out, n, 0x90, 0xdc, 0xdd);
}

fn container_len(out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(b16);
        out.extend((n as u16).to_be_bytes());
    } else {
        out.push(b32);
        out.extend((n as u32).to_be_bytes());
    }
}

/// A map key (a Go field name).
pub fn write_key(out: &mut Vec<u8>, name: &str) {
    write_str(out, name.as_bytes());
}

/// A Go `string` as go-msgpack writes it with `WriteExt` set (Consul's
/// user events): like [`write_str`], plus str8 (`0xd9`) for 32..=255 bytes.
pub fn write_str_ext(out: &mut Vec<u8>, s: &[u8]) {
    if (32..=usize::from(u8::MAX)).contains(&s.len()) {
        out.extend([0xd9, s.len() as u8]);
        out.extend_from_slice(s);
    } else {
        write_str(out, s);
    }
}

/// A Go `[]byte` as go-msgpack writes it with `WriteExt` set: the bin
/// family (`0xc4`..`0xc6`), which has no fix form, so bin8 from 0 bytes.
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n <= usize::from(u8::MAX) {
        out.extend([0xc4, n as u8]);
    } else if n <= usize::from(u16::MAX) {
        out.push(0xc5);
        out.extend((n as u16).to_be_bytes());
    } else {
        // Callers bound their inputs far below 4 GiB (see limits).
        out.push(0xc6);
        out.extend((n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uint_bytes(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_uint(&mut out, v);
        out
    }

    #[test]
    fn integers_take_go_msgpack_smallest_forms() {
        assert_eq!(uint_bytes(1), [0x01]);
        assert_eq!(uint_bytes(127), [0x7f]);
        // 200 as nackResp.SeqNo: `0xcc 0xc8` (Go vector "nack" below).
        assert_eq!(uint_bytes(200), [0xcc, 0xc8]);
        assert_eq!(uint_bytes(7946), [0xcd, 0x1f, 0x0a]);
        assert_eq!(uint_bytes(70000), [0xce, 0x00, 0x01, 0x11, 0x70]);
        assert_eq!(
            uint_bytes(5_000_000_000),
            [0xcf, 0, 0, 0, 0x01, 0x2a, 0x05, 0xf2, 0x00]
        );
        let mut out = Vec::new();
        write_int(&mut out, -1);
        write_int(&mut out, -33);
        write_int(&mut out, -200);
        assert_eq!(out, [0xff, 0xd0, 0xdf, 0xd1, 0xff, 0x38]);
    }

    #[test]
    fn strings_skip_str8_like_go_msgpack_without_write_ext() {
        let mut out = Vec::new();
        write_str(&mut out, &[b'n'; 31]);
        assert_eq!(out[0], 0xbf);
        out.clear();
        write_str(&mut out, &[b'n'; 40]);
        assert_eq!(&out[..3], &[0xda, 0x00, 0x28]);
        out.clear();
        write_bytes(&mut out, b"");
        assert_eq!(out, [0xc0]);
    }

    #[test]
    fn write_ext_strings_use_str8_and_bytes_use_bin() {
        let mut out = Vec::new();
        write_str_ext(&mut out, &[b'n'; 31]);
        assert_eq!(out[0], 0xbf);
        out.clear();
        write_str_ext(&mut out, &[b'n'; 36]);
        assert_eq!(&out[..2], &[0xd9, 36]);
        out.clear();
        write_str_ext(&mut out, &[b'n'; 256]);
        assert_eq!(&out[..3], &[0xda, 0x01, 0x00]);
        out.clear();
        write_bin(&mut out, b"hi");
        assert_eq!(out, b"\xc4\x02hi");
        out.clear();
        write_bin(&mut out, &[0; 300]);
        assert_eq!(&out[..3], &[0xc5, 0x01, 0x2c]);
        for (bytes, want) in [(&b"\xd9\x24"[..], 36), (b"\xc4\x00", 0)] {
            let mut data = bytes.to_vec();
            data.resize(2 + want, b'x');
            assert_eq!(read_value(&data).unwrap().1, data.len());
        }
    }

    #[test]
    fn reader_accepts_str8_bin_and_v2_int16() {
        // str8 and bin8 (what newer msgpack writers use for the same data).
        assert_eq!(read_value(b"\xd9\x01a").unwrap().0, Value::Bytes(b"a"));
        assert_eq!(read_value(b"\xc4\x01a").unwrap().0, Value::Bytes(b"a"));
        // go-msgpack v2 writes a Go int of 200 as int16.
        assert_eq!(read_value(b"\xd1\x00\xc8").unwrap().0, Value::Uint(200));
        assert_eq!(read_value(b"\xd0\xff").unwrap().0, Value::Int(-1));
    }

    #[test]
    fn reader_refuses_without_panicking() {
        assert!(matches!(
            read_value(b""),
            Err(WireError::Truncated { need: 1, have: 0 })
        ));
        assert!(matches!(
            read_value(b"\xda\x00\x05ab"),
            Err(WireError::Truncated { need: 8, have: 5 })
        ));
        assert!(matches!(
            read_value(b"\xc1"),
            Err(WireError::Msgpack { offset: 0, .. })
        ));
        // A map claiming 4 billion entries in 5 bytes: truncation, no
        // allocation of the claimed size.
        assert!(matches!(
            read_value(b"\xdf\xff\xff\xff\xff"),
            Err(WireError::Truncated { .. })
        ));
        let deep = vec![0x91u8; 100];
        assert!(matches!(
            read_value(&deep),
            Err(WireError::Msgpack { reason, .. }) if reason.contains("nesting")
        ));
    }

    #[test]
    fn fields_default_missing_and_skip_unknown() {
        // {"SeqNo": 5, "Future": [1, {"x": nil}], "SeqNo": 6}
        let bytes = b"\x83\xa5SeqNo\x05\xa6Future\x92\x01\x81\xa1x\xc0\xa5SeqNo\x06";
        let (v, used) = read_value(bytes).unwrap();
        assert_eq!(used, bytes.len());
        let f = Fields::of(&v, "test").unwrap();
        assert_eq!(f.u32("SeqNo").unwrap(), 6);
        assert_eq!(f.string("Node").unwrap(), "");
        assert!(!f.bool("Nack").unwrap());
        assert!(matches!(
            f.bool("SeqNo"),
            Err(WireError::Field { field: "SeqNo", .. })
        ));
        assert!(f.u8("Future").is_err());
    }

    proptest! {
        #[test]
        fn written_integers_and_strings_read_back(v in any::<u64>(), i in any::<i64>(), s in proptest::collection::vec(any::<u8>(), 0..70_000)) {
            let mut out = Vec::new();
            write_uint(&mut out, v);
            write_int(&mut out, i);
            write_str(&mut out, &s);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.value().unwrap(), Value::Uint(v));
            let want = if i >= 0 { Value::Uint(i as u64) } else { Value::Int(i) };
            prop_assert_eq!(r.value().unwrap(), want);
            prop_assert_eq!(r.value().unwrap(), Value::Bytes(&s));
            prop_assert_eq!(r.position(), out.len());
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read_value(&data);
        }
    }
}
