//! The bytes of one `grpc.health.v1.Health/Check` call, hand-encoded: the
//! request is a single optional string field, the response a single enum,
//! so a protobuf library would be all weight and no help.
//!
//! gRPC over HTTP/2 sends each message as a length-prefixed frame: one
//! byte "compressed" flag, a big-endian `u32` length, then the protobuf
//! bytes. The response decoder reads bytes from whatever answered on the
//! probed port, so it is bounds-checked throughout, refuses bodies over
//! [`GRPC_HEALTH_RESPONSE_BYTES_MAX`] and never panics (the
//! `grpc_health_response` fuzz target holds it to that).

use tribune_core::limits::GRPC_HEALTH_RESPONSE_BYTES_MAX;

/// Length of the frame header before each message.
const FRAME_HEADER_BYTES: usize = 5;
/// `HealthCheckRequest.service` and `HealthCheckResponse.status` are both
/// field 1.
const FIELD_NUMBER: u64 = 1;
/// A varint is at most ten bytes long.
const VARINT_BYTES_MAX: usize = 10;

/// `HealthCheckResponse.ServingStatus`, kept as its wire number so values a
/// newer server sends still print (as Go's protobuf does: the number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServingStatus(pub i32);

impl ServingStatus {
    pub const UNKNOWN: ServingStatus = ServingStatus(0);
    pub const SERVING: ServingStatus = ServingStatus(1);
    pub const NOT_SERVING: ServingStatus = ServingStatus(2);
    pub const SERVICE_UNKNOWN: ServingStatus = ServingStatus(3);
}

impl std::fmt::Display for ServingStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("UNKNOWN"),
            1 => f.write_str("SERVING"),
            2 => f.write_str("NOT_SERVING"),
            3 => f.write_str("SERVICE_UNKNOWN"),
            n => write!(f, "{n}"),
        }
    }
}

/// Why a response body is not one health response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The body ended inside the frame header or the message.
    Truncated,
    /// The body (or a frame's declared length) is over the limit.
    TooLarge(usize),
    /// The compressed flag is set; the request asked for no compression.
    Compressed,
    /// Bytes after the single message of a unary response.
    TrailingBytes(usize),
    /// A varint longer than ten bytes, or a field this decoder cannot skip.
    Malformed(&'static str),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("response message truncated"),
            WireError::TooLarge(n) => write!(
                f,
                "response message of {n} bytes exceeds the limit of {GRPC_HEALTH_RESPONSE_BYTES_MAX}"
            ),
            WireError::Compressed => f.write_str("compressed response message"),
            WireError::TrailingBytes(n) => write!(f, "{n} bytes after the response message"),
            WireError::Malformed(why) => write!(f, "malformed response message: {why}"),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The framed `HealthCheckRequest { service }` (empty service: field
/// omitted, as proto3 encodes a default).
pub fn encode_request(service: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(service.len() + 4);
    if !service.is_empty() {
        put_varint(&mut message, FIELD_NUMBER << 3 | 2);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + message.len());
    frame.push(0);
    // Service names come from check definitions, far below 4 GiB.
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

/// Reads a varint at `*at`, advancing past it.
fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..VARINT_BYTES_MAX {
        let byte = *bytes.get(*at).ok_or(WireError::Truncated)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::Malformed("varint longer than ten bytes"))
}

/// Advances `*at` by `n` bytes if that many remain.
fn skip(bytes: &[u8], at: &mut usize, n: u64) -> Result<(), WireError> {
    let remaining = (bytes.len() - *at) as u64;
    if n > remaining {
        return Err(WireError::Truncated);
    }
    *at += n as usize;
    Ok(())
}

/// Decodes a `HealthCheckResponse` message: the last `status` field wins,
/// unknown fields are skipped (protobuf's rules), a missing status is
/// `UNKNOWN`.
fn decode_message(bytes: &[u8]) -> Result<ServingStatus, WireError> {
    let mut status = ServingStatus::UNKNOWN;
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        match (key >> 3, key & 7) {
            (0, _) => return Err(WireError::Malformed("field number 0")),
            // Enums are int32 on the wire; protobuf truncates wider values.
            (FIELD_NUMBER, 0) => status = ServingStatus(varint(bytes, &mut at)? as i32),
            (_, 0) => {
                varint(bytes, &mut at)?;
            }
            (_, 1) => skip(bytes, &mut at, 8)?,
            (_, 2) => {
                let len = varint(bytes, &mut at)?;
                skip(bytes, &mut at, len)?;
            }
            (_, 5) => skip(bytes, &mut at, 4)?,
            _ => return Err(WireError::Malformed("unsupported wire type")),
        }
    }
    Ok(status)
}

/// Decodes a whole unary response body: exactly one uncompressed frame.
pub fn decode_response(body: &[u8]) -> Result<ServingStatus, WireError> {
    if body.len() > GRPC_HEALTH_RESPONSE_BYTES_MAX {
        return Err(WireError::TooLarge(body.len()));
    }
    let header = body.get(..FRAME_HEADER_BYTES).ok_or(WireError::Truncated)?;
    if header[0] != 0 {
        return Err(WireError::Compressed);
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let rest = &body[FRAME_HEADER_BYTES..];
    if len > GRPC_HEALTH_RESPONSE_BYTES_MAX {
        return Err(WireError::TooLarge(len));
    }
    let message = rest.get(..len).ok_or(WireError::Truncated)?;
    if rest.len() > len {
        return Err(WireError::TrailingBytes(rest.len() - len));
    }
    decode_message(message)
}

/// Decodes `grpc-message`, which gRPC percent-encodes; bad escapes stay as
/// they are, invalid UTF-8 is replaced.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC status codes by number, as grpc-go prints them in errors.
pub fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |n| n.to_string())
}

/// The decoder as a fuzz target: any bytes decode or fail without
/// panicking, and a status decoded from a re-encoded message survives.
/// `fuzz/fuzz_targets/grpc_health_response.rs` calls this;
/// `io-tokio/tests/fuzz_corpora.rs` replays the corpus.
pub fn fuzzing(data: &[u8]) {
    if let Ok(status) = decode_response(data) {
        let mut message = Vec::new();
        put_varint(&mut message, FIELD_NUMBER << 3);
        put_varint(&mut message, status.0 as i64 as u64);
        let mut frame = vec![0];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        assert_eq!(decode_response(&frame), Ok(status));
        let _ = status.to_string();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = percent_decode(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    #[test]
    fn request_encoding() {
        assert_eq!(encode_request(""), [0, 0, 0, 0, 0]);
        assert_eq!(
            encode_request("web"),
            [0, 0, 0, 0, 5, 0x0a, 3, b'w', b'e', b'b']
        );
    }

    #[test]
    fn statuses_decode() {
        assert_eq!(decode_response(&frame(&[])), Ok(ServingStatus::UNKNOWN));
        assert_eq!(decode_response(&frame(&[8, 1])), Ok(ServingStatus::SERVING));
        assert_eq!(
            decode_response(&frame(&[8, 2])),
            Ok(ServingStatus::NOT_SERVING)
        );
        // Unknown fields of every skippable wire type, then the status.
        let message = [
            0x10, 0x96, 0x01, 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x22, 2, b'h', b'i', 0x2d, 1, 2, 3, 4,
            8, 3,
        ];
        assert_eq!(
            decode_response(&frame(&message)),
            Ok(ServingStatus::SERVICE_UNKNOWN)
        );
        // Negative enum values are ten-byte varints.
        let negative = [
            8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(decode_response(&frame(&negative)), Ok(ServingStatus(-1)));
        assert_eq!(ServingStatus(7).to_string(), "7");
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert_eq!(decode_response(&[0, 0, 0]), Err(WireError::Truncated));
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 2, 8]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            decode_response(&[1, 0, 0, 0, 0]),
            Err(WireError::Compressed)
        );
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 0, 8]),
            Err(WireError::TrailingBytes(1))
        );
        assert!(matches!(
            decode_response(&[0, 0xff, 0xff, 0xff, 0xff]),
            Err(WireError::TooLarge(_))
        ));
        assert!(matches!(
            decode_response(&frame(&[0x0b])),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            decode_response(&frame(&[
                8, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1
            ])),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            decode_response(&frame(&[0x12, 5, 1])),
            Err(WireError::Truncated)
        );
        let huge = vec![0u8; GRPC_HEALTH_RESPONSE_BYTES_MAX + 1];
        assert!(matches!(
            decode_response(&huge),
            Err(WireError::TooLarge(_))
        ));
    }

    #[test]
    fn grpc_message_is_percent_decoded() {
        assert_eq!(percent_decode("unknown%20service%"), "unknown service%");
        assert_eq!(percent_decode("%e2%9c%93 %zz"), "\u{2713} %zz");
        assert_eq!(code_name(5), "NotFound");
        assert_eq!(code_name(99), "Code(99)");
    }
}
