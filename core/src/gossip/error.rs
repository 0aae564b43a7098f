//! The one error type of the gossip wire codec.
//!
//! Every decoder of peer bytes (packets, streams, serf messages, tags)
//! answers bad input with one of these, never with a panic. `Truncated`
//! is special for streams: it carries how many bytes the input must have
//! before decoding can go further, which is how a shell reading a TCP
//! stream knows to read more rather than give up.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The input ends early: decoding needs at least `need` bytes of the
    /// buffer it was reading and has `have`.
    Truncated { need: usize, have: usize },
    /// Bytes that are not msgpack (or not the msgpack go-msgpack writes).
    Msgpack { offset: usize, reason: &'static str },
    /// A msgpack value of the wrong kind or out of range for a field.
    Field {
        field: &'static str,
        reason: &'static str,
    },
    /// Nothing at all where a message was expected.
    Empty,
    /// A type byte memberlist (or serf) does not define.
    UnknownMessageType(u8),
    /// A defined type byte where it cannot appear (`pushPull` in a packet,
    /// `alive` on a stream, ...).
    UnexpectedMessageType { got: u8, context: &'static str },
    /// The packet's CRC-32 (IEEE) does not match its contents.
    BadChecksum { expected: u32, computed: u32 },
    /// An encryption version byte other than 0 or 1.
    UnsupportedEncryptionVersion(u8),
    /// No key of the keyring opens the ciphertext (wrong key, wrong label,
    /// or tampered bytes).
    NoKeyCouldDecrypt,
    /// Encrypted input but no keyring is configured.
    EncryptedWithoutKeyring,
    /// Plaintext where encryption is required (`verify_incoming`).
    NotEncrypted,
    /// The label header names another gossip pool than ours.
    LabelMismatch { expected: String, got: String },
    /// A label header that is empty, over 255 bytes, or (with the inbound
    /// label check skipped) present at all.
    BadLabel(&'static str),
    /// A length over one of the limits in `crate::limits`.
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// A `compress` message with an algorithm other than LZW (0).
    UnknownCompression(u64),
    /// An LZW stream that Go's `compress/lzw` would refuse.
    Lzw(&'static str),
    /// Messages nested deeper (compound in compress in compound ...) than
    /// `limits::GOSSIP_NESTING_MAX`.
    TooDeep,
    /// A compound message whose header is cut short.
    Compound(&'static str),
    /// A key that is not 16, 24 or 32 bytes, or not valid base64.
    BadKey(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { need, have } => {
                write!(f, "truncated: need at least {need} bytes, have {have}")
            }
            WireError::Msgpack { offset, reason } => {
                write!(f, "malformed msgpack at offset {offset}: {reason}")
            }
            WireError::Field { field, reason } => write!(f, "field {field}: {reason}"),
            WireError::Empty => f.write_str("empty message"),
            WireError::UnknownMessageType(t) => write!(f, "unknown message type {t}"),
            WireError::UnexpectedMessageType { got, context } => {
                write!(f, "message type {got} is not valid {context}")
            }
            WireError::BadChecksum { expected, computed } => write!(
                f,
                "bad checksum: packet says {expected:#010x}, contents give {computed:#010x}"
            ),
            WireError::UnsupportedEncryptionVersion(v) => {
                write!(f, "unsupported encryption version {v}")
            }
            WireError::NoKeyCouldDecrypt => {
                f.write_str("no installed keys could decrypt the message")
            }
            WireError::EncryptedWithoutKeyring => {
                f.write_str("remote state is encrypted and encryption is not configured")
            }
            WireError::NotEncrypted => {
                f.write_str("encryption is configured but remote state is not encrypted")
            }
            WireError::LabelMismatch { expected, got } => {
                write!(f, "label mismatch: expected {expected:?}, got {got:?}")
            }
            WireError::BadLabel(reason) => write!(f, "bad label header: {reason}"),
            WireError::TooLarge { what, len, max } => {
                write!(f, "{what} of {len} bytes is over the limit of {max}")
            }
            WireError::UnknownCompression(a) => {
                write!(f, "cannot decompress unknown algorithm {a}")
            }
            WireError::Lzw(reason) => write!(f, "lzw: {reason}"),
            WireError::TooDeep => f.write_str("messages nested too deeply"),
            WireError::Compound(reason) => write!(f, "bad compound message: {reason}"),
            WireError::BadKey(reason) => write!(f, "bad encryption key: {reason}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Decoding an inner buffer (decrypted or decompressed) that is cut short
/// is a malformed message, not a reason to read more from the socket.
pub(crate) fn inner(e: WireError) -> WireError {
    match e {
        WireError::Truncated { .. } => WireError::Msgpack {
            offset: 0,
            reason: "inner message is truncated",
        },
        other => other,
    }
}
