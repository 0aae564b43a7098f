//! Server RPC framing: how one message is cut out of a TCP byte stream.
//!
//! Every message between servers (Raft traffic, forwarded client writes) is
//! one frame:
//!
//! ```text
//! 0      2         3      4                12            16
//! +------+---------+------+----------------+-------------+----------------+
//! | "TB" | version | kind | request id u64 | body len u32| body (len bytes)|
//! +------+---------+------+----------------+-------------+----------------+
//!                          big-endian        big-endian
//! ```
//!
//! The body is postcard (serde) and its type follows from `kind`; the shell
//! decodes it. A request and its reply share the request id, so a client
//! can tell a late reply to an abandoned call from the one it waits for.
//!
//! The decoder is pure and total: garbage, truncated and oversize input is
//! an [`FrameError`], never a panic, and the length is checked against
//! [`RPC_FRAME_BODY_BYTES_MAX`] from the header alone, so a reader never
//! allocates for a body it will refuse.

use crate::limits::RPC_FRAME_BODY_BYTES_MAX;
use std::fmt;

pub const RPC_FRAME_MAGIC: [u8; 2] = *b"TB";
pub const RPC_FRAME_VERSION: u8 = 1;
pub const RPC_FRAME_HEADER_BYTES: usize = 16;

/// What a frame's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Raft AppendEntries (also heartbeats).
    AppendEntries = 1,
    Vote = 2,
    PreVote = 3,
    /// One chunk of a full snapshot being streamed to a follower.
    SnapshotChunk = 4,
    /// A client write a follower forwards to the leader; the body is
    /// [`crate::command::Command::encode`].
    Forward = 5,
    /// A server-to-server request beyond Raft's own (join exchange,
    /// session renewal, read index, membership changes); the body is a
    /// postcard `ServerRequest` (io-tokio's `raft::rpc`).
    Request = 6,
    /// The answer to the request with the same id.
    Reply = 0x80,
    /// The server could not answer the request (unknown kind, a body that
    /// does not decode); the body is a UTF-8 reason.
    Error = 0x81,
}

impl FrameKind {
    pub const ALL: [FrameKind; 8] = [
        FrameKind::AppendEntries,
        FrameKind::Vote,
        FrameKind::PreVote,
        FrameKind::SnapshotChunk,
        FrameKind::Forward,
        FrameKind::Request,
        FrameKind::Reply,
        FrameKind::Error,
    ];

    pub fn from_byte(byte: u8) -> Option<FrameKind> {
        FrameKind::ALL.into_iter().find(|kind| *kind as u8 == byte)
    }

    /// Kinds a client sends (and a server answers).
    pub fn is_request(self) -> bool {
        !matches!(self, FrameKind::Reply | FrameKind::Error)
    }
}

/// Why bytes are not a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// More bytes are needed: `have` of at least `need`. On a stream this
    /// means "read more"; on a closed stream or a datagram, a cut frame.
    Truncated {
        have: usize,
        need: usize,
    },
    BadMagic([u8; 2]),
    UnknownVersion(u8),
    UnknownKind(u8),
    /// The body is longer than [`RPC_FRAME_BODY_BYTES_MAX`].
    TooLarge {
        len: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated { have, need } => {
                write!(f, "truncated RPC frame: {have} of {need} bytes")
            }
            FrameError::BadMagic(m) => write!(f, "not a tribune RPC frame (magic {m:02x?})"),
            FrameError::UnknownVersion(v) => write!(f, "unknown RPC frame version {v}"),
            FrameError::UnknownKind(k) => write!(f, "unknown RPC frame kind {k:#04x}"),
            FrameError::TooLarge { len } => write!(
                f,
                "RPC frame body of {len} bytes is over the limit of {RPC_FRAME_BODY_BYTES_MAX}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// The fixed-size front of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub request_id: u64,
    /// Body length; never above [`RPC_FRAME_BODY_BYTES_MAX`] once decoded.
    pub body_len: u32,
}

impl FrameHeader {
    /// Decodes the first [`RPC_FRAME_HEADER_BYTES`] of `bytes` (the rest is
    /// ignored), checking magic, version, kind and the body limit.
    pub fn decode(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
        let Some(header) = bytes.get(..RPC_FRAME_HEADER_BYTES) else {
            return Err(FrameError::Truncated {
                have: bytes.len(),
                need: RPC_FRAME_HEADER_BYTES,
            });
        };
        let magic = [header[0], header[1]];
        if magic != RPC_FRAME_MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        if header[2] != RPC_FRAME_VERSION {
            return Err(FrameError::UnknownVersion(header[2]));
        }
        let kind = FrameKind::from_byte(header[3]).ok_or(FrameError::UnknownKind(header[3]))?;
        let request_id = u64::from_be_bytes(array(&header[4..12]));
        let body_len = u32::from_be_bytes(array(&header[12..16]));
        if body_len as usize > RPC_FRAME_BODY_BYTES_MAX {
            return Err(FrameError::TooLarge {
                len: u64::from(body_len),
            });
        }
        Ok(FrameHeader {
            kind,
            request_id,
            body_len,
        })
    }

    pub fn encode(&self) -> [u8; RPC_FRAME_HEADER_BYTES] {
        let mut out = [0u8; RPC_FRAME_HEADER_BYTES];
        out[..2].copy_from_slice(&RPC_FRAME_MAGIC);
        out[2] = RPC_FRAME_VERSION;
        out[3] = self.kind as u8;
        out[4..12].copy_from_slice(&self.request_id.to_be_bytes());
        out[12..16].copy_from_slice(&self.body_len.to_be_bytes());
        out
    }

    /// Header plus body.
    pub fn frame_len(&self) -> usize {
        RPC_FRAME_HEADER_BYTES + self.body_len as usize
    }
}

/// Copies a slice of a length the caller just took into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// One decoded frame, borrowing its body from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Decodes the frame at the front of `bytes`; returns it and the number
    /// of bytes it took (the next frame starts there).
    pub fn decode(bytes: &'a [u8]) -> Result<(Frame<'a>, usize), FrameError> {
        let header = FrameHeader::decode(bytes)?;
        let len = header.frame_len();
        let body = bytes
            .get(RPC_FRAME_HEADER_BYTES..len)
            .ok_or(FrameError::Truncated {
                have: bytes.len(),
                need: len,
            })?;
        Ok((Frame { header, body }, len))
    }
}

/// Appends a frame to `out`; refuses a body over the limit (the caller's
/// message is too big to send, which it must report, not truncate).
pub fn encode(
    kind: FrameKind,
    request_id: u64,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    if body.len() > RPC_FRAME_BODY_BYTES_MAX {
        return Err(FrameError::TooLarge {
            len: body.len() as u64,
        });
    }
    let header = FrameHeader {
        kind,
        request_id,
        // Checked against the limit, which fits in u32, just above.
        body_len: body.len() as u32,
    };
    out.reserve(header.frame_len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(body);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: FrameKind, id: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(kind, id, body, &mut out).expect("small body");
        out
    }

    #[test]
    fn round_trip_and_consecutive_frames() {
        let mut bytes = frame(FrameKind::Vote, 7, b"hello");
        bytes.extend(frame(FrameKind::Reply, 7, b""));
        let (first, used) = Frame::decode(&bytes).expect("first frame");
        assert_eq!(first.header.kind, FrameKind::Vote);
        assert_eq!(first.header.request_id, 7);
        assert_eq!(first.body, b"hello");
        let (second, rest) = Frame::decode(&bytes[used..]).expect("second frame");
        assert_eq!(second.header.kind, FrameKind::Reply);
        assert_eq!(second.body, b"");
        assert_eq!(used + rest, bytes.len());
    }

    #[test]
    fn refuses_garbage_truncation_and_oversize() {
        let good = frame(FrameKind::Forward, 1, b"abc");
        assert_eq!(
            Frame::decode(&good[..5]),
            Err(FrameError::Truncated { have: 5, need: 16 })
        );
        assert_eq!(
            Frame::decode(&good[..17]),
            Err(FrameError::Truncated { have: 17, need: 19 })
        );
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(Frame::decode(&bad), Err(FrameError::BadMagic(_))));
        let mut bad = good.clone();
        bad[2] = 9;
        assert_eq!(Frame::decode(&bad), Err(FrameError::UnknownVersion(9)));
        let mut bad = good.clone();
        bad[3] = 0x42;
        assert_eq!(Frame::decode(&bad), Err(FrameError::UnknownKind(0x42)));
        let mut huge = good;
        huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Frame::decode(&huge),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX)
            })
        );
        let body = vec![0u8; RPC_FRAME_BODY_BYTES_MAX + 1];
        assert!(matches!(
            encode(FrameKind::Vote, 1, &body, &mut Vec::new()),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
