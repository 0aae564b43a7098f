//! LZW as Go's `compress/lzw` does it with `LSB` bit order and 8-bit
//! literals: memberlist's only compression (`compress{Algo: 0}`), on by
//! default in its LAN config, so real serf and Consul agents send it.
//!
//! The format, as Go's reader and writer agree on it:
//! - codes 0..=255 are literals, 256 is *clear*, 257 is *end*; new codes
//!   start at 258;
//! - codes start 9 bits wide, packed least-significant bit first; the width
//!   grows by one when the next code to assign reaches a power of two, up
//!   to 12 bits;
//! - the writer sends *clear* first (Go ≥ 1.17), sends *clear* again and
//!   starts over when code 4095 would be assigned, and ends with *end*
//!   followed by the partial last byte;
//! - the reader stops at *end* and ignores what follows; input that ends
//!   before *end* is an error (memberlist refuses the message), as is a
//!   code beyond the next one to be assigned.
//!
//! The encoder here produces the same bytes as Go's writer (checked against
//! vectors from Go 1.19 below), so compressed messages are byte-identical.

use super::error::WireError;

const CLEAR: u16 = 256;
const END: u16 = 257;
const FIRST_CODE: u16 = 258;
const WIDTH_MIN: u32 = 9;
const WIDTH_MAX: u32 = 12;
/// Go's writer resets when its next code would reach this.
const CODE_MAX: u16 = (1 << WIDTH_MAX) - 1;
const NO_CODE: u16 = u16::MAX;

struct BitWriter {
    out: Vec<u8>,
    bits: u32,
    n_bits: u32,
}

impl BitWriter {
    fn put(&mut self, code: u16, width: u32) {
        self.bits |= u32::from(code) << self.n_bits;
        self.n_bits += width;
        while self.n_bits >= 8 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.n_bits -= 8;
        }
    }
}

/// The dictionary of the encoder: (prefix code, next byte) → code, as a
/// first-child / next-sibling trie over codes.
struct Trie {
    first_child: Vec<u16>,
    next_sibling: Vec<u16>,
    byte: Vec<u8>,
}

impl Trie {
    fn new() -> Self {
        let n = usize::from(CODE_MAX) + 1;
        Trie {
            first_child: vec![NO_CODE; n],
            next_sibling: vec![NO_CODE; n],
            byte: vec![0; n],
        }
    }

    fn reset(&mut self) {
        self.first_child.fill(NO_CODE);
    }

    fn find(&self, prefix: u16, b: u8) -> Option<u16> {
        let mut child = self.first_child[usize::from(prefix)];
        while child != NO_CODE {
            if self.byte[usize::from(child)] == b {
                return Some(child);
            }
            child = self.next_sibling[usize::from(child)];
        }
        None
    }

    fn insert(&mut self, prefix: u16, b: u8, code: u16) {
        let c = usize::from(code);
        self.byte[c] = b;
        self.first_child[c] = NO_CODE;
        self.next_sibling[c] = self.first_child[usize::from(prefix)];
        self.first_child[usize::from(prefix)] = code;
    }
}

struct Encoder {
    bits: BitWriter,
    width: u32,
    /// The code the next new dictionary entry gets.
    hi: u16,
    overflow: u16,
    trie: Trie,
}

impl Encoder {
    /// Advances `hi` after a code was written; at the dictionary's end,
    /// sends *clear* and starts over. Returns false after a reset.
    fn advance(&mut self) -> bool {
        self.hi += 1;
        if self.hi == self.overflow {
            self.width += 1;
            self.overflow <<= 1;
        }
        if self.hi == CODE_MAX {
            self.bits.put(CLEAR, self.width);
            self.width = WIDTH_MIN;
            self.hi = FIRST_CODE - 1;
            self.overflow = 1 << WIDTH_MIN;
            self.trie.reset();
            return false;
        }
        true
    }
}

/// Compresses `input` exactly as Go's `lzw.NewWriter(w, lzw.LSB, 8)`
/// followed by `Close`.
pub fn compress(input: &[u8]) -> Vec<u8> {
    let mut e = Encoder {
        bits: BitWriter {
            out: Vec::with_capacity(input.len() / 2 + 8),
            bits: 0,
            n_bits: 0,
        },
        width: WIDTH_MIN,
        hi: FIRST_CODE - 1,
        overflow: 1 << WIDTH_MIN,
        trie: Trie::new(),
    };
    e.bits.put(CLEAR, e.width);
    if let Some((&first, rest)) = input.split_first() {
        let mut code = u16::from(first);
        for &b in rest {
            if let Some(next) = e.trie.find(code, b) {
                code = next;
                continue;
            }
            e.bits.put(code, e.width);
            let prefix = code;
            code = u16::from(b);
            if e.advance() {
                let hi = e.hi;
                e.trie.insert(prefix, b, hi);
            }
        }
        e.bits.put(code, e.width);
        e.advance();
    }
    e.bits.put(END, e.width);
    let mut bits = e.bits;
    if bits.n_bits > 0 {
        bits.out.push(bits.bits as u8);
    }
    bits.out
}

/// Decompresses an LZW stream as Go's `lzw.NewReader(r, lzw.LSB, 8)` reads
/// it to its end code, refusing output over `max_bytes`.
pub fn decompress(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, WireError> {
    let n = usize::from(CODE_MAX) + 1;
    let mut prefix = vec![0u16; n];
    let mut suffix = vec![0u8; n];
    let mut out: Vec<u8> = Vec::with_capacity(input.len().saturating_mul(2).min(max_bytes));
    let mut scratch: Vec<u8> = Vec::with_capacity(n);
    let (mut bits, mut n_bits, mut pos) = (0u32, 0u32, 0usize);
    let mut width = WIDTH_MIN;
    let mut hi = END;
    let mut overflow: u16 = 1 << WIDTH_MIN;
    let mut last = NO_CODE;
    loop {
        while n_bits < width {
            let Some(&b) = input.get(pos) else {
                return Err(WireError::Lzw(
                    "unexpected end of input before the end code",
                ));
            };
            pos += 1;
            bits |= u32::from(b) << n_bits;
            n_bits += 8;
        }
        let code = (bits & ((1 << width) - 1)) as u16;
        bits >>= width;
        n_bits -= width;
        if code == CLEAR {
            width = WIDTH_MIN;
            hi = END;
            overflow = 1 << WIDTH_MIN;
            last = NO_CODE;
            continue;
        }
        if code == END {
            return Ok(out);
        }
        if code > hi {
            return Err(WireError::Lzw("invalid code"));
        }
        // Expand `code` into scratch, reversed.
        scratch.clear();
        let mut c = code;
        if code == hi && last != NO_CODE {
            // The code being defined right now: last's expansion plus its
            // own first byte.
            let mut head = last;
            while head >= CLEAR {
                head = prefix[usize::from(head)];
            }
            scratch.push(head as u8);
            c = last;
        } else if code == hi {
            // `hi` has no definition yet and there is no previous code to
            // define it from (Go reads stale table entries here; those are
            // never produced by a writer).
            return Err(WireError::Lzw("invalid code"));
        }
        while c >= CLEAR {
            scratch.push(suffix[usize::from(c)]);
            c = prefix[usize::from(c)];
        }
        scratch.push(c as u8);
        if out.len() + scratch.len() > max_bytes {
            return Err(WireError::TooLarge {
                what: "decompressed message",
                len: out.len() + scratch.len(),
                max: max_bytes,
            });
        }
        out.extend(scratch.iter().rev());
        if last != NO_CODE {
            suffix[usize::from(hi)] = c as u8;
            prefix[usize::from(hi)] = last;
        }
        last = code;
        hi += 1;
        if hi >= overflow {
            if width == WIDTH_MAX {
                last = NO_CODE;
                hi -= 1;
            } else {
                width += 1;
                overflow <<= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::codec::crc32_ieee;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The 10,000-byte input of the Go vector `lzw_big`.
    fn big_input() -> Vec<u8> {
        (0..10_000usize)
            .map(|i| ((i * 7) ^ (i >> 3)) as u8)
            .collect()
    }

    /// Vectors printed by Go 1.19's `compress/lzw` (`lzw.NewWriter(&buf,
    /// lzw.LSB, 8)`, `Write`, `Close`), the same calls memberlist's
    /// `compressPayload` makes.
    #[test]
    fn matches_go_compress_lzw_vectors() {
        let cases: [(&[u8], &str); 3] = [
            // clear (256) and end (257), 9 bits each, LSB first.
            (b"", "000302"),
            (b"a", "00c30404"),
            (
                b"TOBEORNOTTOBEORTOBEORNOT",
                "00a93c1152e48914274fa80824687061c183090302",
            ),
        ];
        for (input, go) in cases {
            assert_eq!(compress(input), hex(go), "{input:?}");
            assert_eq!(decompress(&hex(go), 1 << 20).unwrap(), input);
        }
        // Long enough to fill the dictionary and reset it twice: Go's output
        // is 7378 bytes with CRC-32 0x4017fda4.
        let big = compress(&big_input());
        assert_eq!(big.len(), 7378);
        assert_eq!(crc32_ieee(&big), 0x4017_fda4);
        assert_eq!(decompress(&big, 1 << 20).unwrap(), big_input());
    }

    #[test]
    fn refuses_truncated_invalid_and_oversized() {
        let packed = compress(b"TOBEORNOTTOBEORTOBEORNOT");
        assert!(decompress(&packed[..packed.len() - 2], 1 << 20).is_err());
        // The first code after clear may not be an undefined code (300).
        let mut bad = BitWriter {
            out: Vec::new(),
            bits: 0,
            n_bits: 0,
        };
        bad.put(CLEAR, 9);
        bad.put(300, 9);
        bad.put(END, 9);
        bad.put(0, 8);
        assert_eq!(
            decompress(&bad.out, 100),
            Err(WireError::Lzw("invalid code"))
        );
        let zeros = compress(&[0u8; 100_000]);
        assert!(zeros.len() < 2_000);
        assert!(matches!(
            decompress(&zeros, 50_000),
            Err(WireError::TooLarge { .. })
        ));
        // Bytes after the end code are ignored, as Go's reader does.
        let mut trailing = packed.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(
            decompress(&trailing, 1 << 20).unwrap(),
            b"TOBEORNOTTOBEORTOBEORNOT"
        );
    }

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(0u8..4, 0..20_000)) {
            prop_assert_eq!(decompress(&compress(&data), 1 << 20).unwrap(), data);
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decompress(&data, 1 << 16);
        }
    }
}
