//! memberlist's stream (TCP) formats: push/pull state exchange, user
//! messages sent reliably, the TCP fallback ping and its ack, and the
//! error reply.
//!
//! A dialer first writes the label header (if the pool has a label; see
//! [`label_header`](super::codec::label_header)), then one message; the
//! listener answers on the same connection without a label header. Each
//! message is, outermost first:
//!
//! ```text
//! [10][len u32be][vsn nonce ct+tag]  if encrypting: AAD = first 5 bytes + label
//! [9]{Algo: 0, Buf: lzw(...)}        if compressing (always, when enabled)
//! [0]{ping} | [2]{ack} | [13]{Error} | [8]{UserMsgLen}[payload]
//! | [6]{Join, Nodes, UserStateLen}{node}*Nodes[user state]
//! ```
//!
//! Plain messages carry no length, so a reader finds a message's end by
//! parsing it. [`stream_need`] tells the shell whether the bytes it has
//! buffered hold a whole message, or how many it needs at least, so it can
//! read incrementally and stop at the size limits.

use super::codec::{
    check_label, compress_payload, count, decode_body, decode_push_pull, decompress,
    encode_message, split_label, Inbound, Outbound,
};
use super::crypto::{decrypt_payload, encrypt_payload, nonce_from};
use super::error::{inner, WireError};
use super::message::{Message, MessageType};
use super::msgpack::{self, Fields};
use crate::limits::{
    GOSSIP_STREAM_BYTES_MAX, GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX, GOSSIP_USER_STATE_BYTES_MAX,
};
use crate::rng::Rng;

/// Where a stream's label header ends, once enough bytes are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamStart<'a> {
    /// At least this many bytes are needed to tell.
    More(usize),
    /// The label is acceptable; the first message starts at `header_len`.
    /// `label` is the one to authenticate the stream with.
    Ready { label: &'a str, header_len: usize },
}

/// Reads and checks the label header a dialer puts at the start of a
/// stream (memberlist's `RemoveLabelHeaderFromStream` and label check).
pub fn stream_start<'a>(buf: &[u8], inbound: &Inbound<'a>) -> Result<StreamStart<'a>, WireError> {
    if buf.is_empty() {
        return Ok(StreamStart::More(1));
    }
    match split_label(buf) {
        Err(WireError::Truncated { need, .. }) => Ok(StreamStart::More(need)),
        Err(e) => Err(e),
        Ok((got, rest)) => Ok(StreamStart::Ready {
            label: check_label(got, inbound)?,
            header_len: buf.len() - rest.len(),
        }),
    }
}

/// Whether `buf` (after the label header) holds a whole message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamNeed {
    /// The first message is complete and `usize` bytes long.
    Complete(usize),
    /// It needs at least this many bytes in total.
    More(usize),
}

/// How much of a stream to buffer: [`StreamNeed::More`] until the first
/// message is whole, an error if it is malformed or would exceed the
/// limits (`GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX` buffered).
pub fn stream_need(buf: &[u8], inbound: &Inbound<'_>) -> Result<StreamNeed, WireError> {
    match decode_stream(buf, inbound) {
        Ok((_, used)) => Ok(StreamNeed::Complete(used)),
        Err(WireError::Truncated { need, .. }) if need > GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX => {
            Err(WireError::TooLarge {
                what: "stream message",
                len: need,
                max: GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX,
            })
        }
        Err(WireError::Truncated { need, .. }) => Ok(StreamNeed::More(need)),
        Err(e) => Err(e),
    }
}

/// Decodes the first message of a stream (after any label header, whose
/// label `inbound.label` must be): returns it and the bytes it took.
/// `Truncated` means more bytes are needed (see [`stream_need`]).
pub fn decode_stream(buf: &[u8], inbound: &Inbound<'_>) -> Result<(Message, usize), WireError> {
    let Some(&first) = buf.first() else {
        return Err(WireError::Truncated { need: 1, have: 0 });
    };
    if first != MessageType::Encrypt as u8 {
        if inbound.keyring.is_some() && inbound.verify_incoming {
            return Err(WireError::NotEncrypted);
        }
        return decode_maybe_compressed(buf);
    }
    let keyring = inbound.keyring.ok_or(WireError::EncryptedWithoutKeyring)?;
    if buf.len() < 5 {
        return Err(WireError::Truncated {
            need: 5,
            have: buf.len(),
        });
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > GOSSIP_STREAM_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "encrypted stream",
            len,
            max: GOSSIP_STREAM_BYTES_MAX,
        });
    }
    if buf.len() < 5 + len {
        return Err(WireError::Truncated {
            need: 5 + len,
            have: buf.len(),
        });
    }
    let mut aad = buf[..5].to_vec();
    aad.extend_from_slice(inbound.label.as_bytes());
    let plain = decrypt_payload(keyring, &buf[5..5 + len], &aad).map_err(inner)?;
    let (msg, _) = decode_maybe_compressed(&plain).map_err(inner)?;
    Ok((msg, 5 + len))
}

fn decode_maybe_compressed(buf: &[u8]) -> Result<(Message, usize), WireError> {
    if buf.first() != Some(&(MessageType::Compress as u8)) {
        return decode_plain(buf);
    }
    let (value, used) = msgpack::read_value(&buf[1..]).map_err(|e| shift(e, 1))?;
    let payload = decompress(&value, GOSSIP_STREAM_DECOMPRESSED_BYTES_MAX)?;
    if payload.is_empty() {
        return Err(WireError::Empty);
    }
    let (msg, _) = decode_plain(&payload).map_err(inner)?;
    Ok((msg, 1 + used))
}

/// Truncation inside `buf[by..]` as truncation of `buf`.
fn shift(e: WireError, by: usize) -> WireError {
    match e {
        WireError::Truncated { need, have } => WireError::Truncated {
            need: need + by,
            have: have + by,
        },
        other => other,
    }
}

fn decode_plain(buf: &[u8]) -> Result<(Message, usize), WireError> {
    let (&first, body) = buf
        .split_first()
        .ok_or(WireError::Truncated { need: 1, have: 0 })?;
    let t = MessageType::from_u8(first).ok_or(WireError::UnknownMessageType(first))?;
    let (msg, used) = match t {
        MessageType::Ping | MessageType::AckResp | MessageType::Err => {
            let (value, used) = msgpack::read_value(body).map_err(|e| shift(e, 1))?;
            (decode_body(t, &value)?, used)
        }
        MessageType::PushPull => {
            let (p, used) = decode_push_pull(body).map_err(|e| shift(e, 1))?;
            (Message::PushPull(p), used)
        }
        MessageType::User => {
            let (value, used) = msgpack::read_value(body).map_err(|e| shift(e, 1))?;
            let header = Fields::of(&value, "userMsgHeader")?;
            let len = count(
                header.int("UserMsgLen")?,
                "UserMsgLen",
                GOSSIP_USER_STATE_BYTES_MAX,
            )?;
            let end = used + len;
            if end > body.len() {
                return Err(WireError::Truncated {
                    need: 1 + end,
                    have: buf.len(),
                });
            }
            (Message::User(body[used..end].to_vec()), end)
        }
        other => {
            return Err(WireError::UnexpectedMessageType {
                got: other as u8,
                context: "on a stream",
            })
        }
    };
    Ok((msg, 1 + used))
}

/// The plain stream form of a message (no compression, no encryption).
pub fn encode_stream_plain(msg: &Message) -> Result<Vec<u8>, WireError> {
    match msg {
        Message::Ping(_) | Message::Ack(_) | Message::Err(_) | Message::PushPull(_) => {
            Ok(encode_message(msg))
        }
        Message::User(payload) => {
            let mut out = vec![MessageType::User as u8];
            msgpack::write_map_len(&mut out, 1);
            msgpack::write_key(&mut out, "UserMsgLen");
            msgpack::write_int(&mut out, payload.len() as i64);
            out.extend_from_slice(payload);
            Ok(out)
        }
        other => Err(WireError::UnexpectedMessageType {
            got: other.message_type() as u8,
            context: "on a stream",
        }),
    }
}

/// Encodes `msg` for a stream as memberlist's `rawSendMsgStream` does:
/// compressed if `out.compress`, then encrypted with the primary key if
/// `out.keyring` is set. No label header: a dialer writes
/// [`label_header`](super::codec::label_header) first.
pub fn encode_stream(
    msg: &Message,
    out: &Outbound<'_>,
    rng: &mut Rng,
) -> Result<Vec<u8>, WireError> {
    let mut buf = encode_stream_plain(msg)?;
    if out.compress {
        buf = compress_payload(&buf);
    }
    let Some(keyring) = out.keyring else {
        return Ok(buf);
    };
    let len = out.encryption_version.encrypted_len(buf.len());
    if len > GOSSIP_STREAM_BYTES_MAX {
        return Err(WireError::TooLarge {
            what: "encrypted stream",
            len,
            max: GOSSIP_STREAM_BYTES_MAX,
        });
    }
    let mut sealed = Vec::with_capacity(5 + len);
    sealed.push(MessageType::Encrypt as u8);
    sealed.extend((len as u32).to_be_bytes());
    let mut aad = sealed.clone();
    aad.extend_from_slice(out.label.as_bytes());
    let nonce = nonce_from(rng);
    sealed.extend(encrypt_payload(
        out.encryption_version,
        keyring.primary(),
        &nonce,
        &buf,
        &aad,
    ));
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::codec::label_header;
    use crate::gossip::codec::tests::{hex, sample_push_pull};
    use crate::gossip::crypto::Keyring;
    use crate::gossip::message::{Ack, ErrResp, Ping};

    const GO_PUSH_PULL: &str = "0683a44a6f696ec3a54e6f64657302ac5573657253746174654c656e0387a441646472a47f000001ab496e6361726e6174696f6e01a44d657461a2ff80a44e616d65a161a4506f7274cd1f0aa5537461746500a356736ea601050202050487a441646472a47f000002ab496e6361726e6174696f6e02a44d657461c0a44e616d65a162a4506f7274cd1f0ba5537461746502a356736ea601050202050402dead";
    /// memberlist 0.2.2's `compressPayload` over `GO_PUSH_PULL`, the
    /// stream a real agent sends with compression on.
    const GO_PUSH_PULL_COMPRESSED: &str = "0982a4416c676f00a3427566da0095000d0c22a5e44d1a37c34a397943a6cc1c01acaacc2923670a9d3074ca3029e366c0215241c8909143ea0f00000156257133268c1c3718d3bc7113805493321745fd0344ca4998366542852105e58d1c3acd3e28286511631900a3accc71632a400101020a10f8187264c9930254b27409938e4c37026ce20c03ace7cfa062881a45fa6101d38b1905449d5af56a560202bcb50a08";
    /// `[userMsg]{UserMsgLen: 3}"abc"` as memberlist's `sendUserMsg` writes it.
    const GO_USER_STREAM: &str = "0881aa557365724d73674c656e03616263";

    fn plain() -> Inbound<'static> {
        Inbound::new("", None)
    }

    #[test]
    fn go_streams_decode_and_reencode_identically() {
        let pp = Message::PushPull(sample_push_pull());
        let bytes = hex(GO_PUSH_PULL);
        assert_eq!(
            decode_stream(&bytes, &plain()).unwrap(),
            (pp.clone(), bytes.len())
        );
        let compressed = hex(GO_PUSH_PULL_COMPRESSED);
        assert_eq!(
            decode_stream(&compressed, &plain()).unwrap(),
            (pp.clone(), compressed.len())
        );
        let mut rng = Rng::from_seed(1);
        let out = Outbound::new("", None);
        assert_eq!(encode_stream(&pp, &out, &mut rng).unwrap(), compressed);
        let user = Message::User(b"abc".to_vec());
        let bytes = hex(GO_USER_STREAM);
        assert_eq!(encode_stream_plain(&user).unwrap(), bytes);
        assert_eq!(
            decode_stream(&bytes, &plain()).unwrap(),
            (user, bytes.len())
        );
    }

    #[test]
    fn need_grows_until_the_message_is_whole() {
        for full in [
            hex(GO_PUSH_PULL),
            hex(GO_PUSH_PULL_COMPRESSED),
            hex(GO_USER_STREAM),
        ] {
            let mut have = 0;
            let mut steps = 0;
            loop {
                match stream_need(&full[..have], &plain()).unwrap() {
                    StreamNeed::More(n) => {
                        assert!(n > have && n <= full.len(), "need {n} with {have}");
                        have = n;
                    }
                    StreamNeed::Complete(n) => {
                        assert_eq!(n, full.len());
                        break;
                    }
                }
                steps += 1;
                assert!(steps < 400);
            }
            // Trailing bytes (the next message) are not consumed.
            let mut more = full.clone();
            more.extend([1, 2, 3]);
            assert_eq!(
                stream_need(&more, &plain()).unwrap(),
                StreamNeed::Complete(full.len())
            );
        }
    }

    #[test]
    fn encrypted_streams_round_trip_and_authenticate_length_and_label() {
        let ring = Keyring::with_keys(vec![3; 32], vec![vec![4; 16]]).unwrap();
        let mut rng = Rng::from_seed(5);
        let msgs = [
            Message::PushPull(sample_push_pull()),
            Message::Ping(Ping {
                seq_no: 4,
                node: "b".into(),
                ..Ping::default()
            }),
            Message::Ack(Ack {
                seq_no: 4,
                payload: vec![],
            }),
            Message::Err(ErrResp {
                error: "remote state is encrypted and encryption is not configured".into(),
            }),
            Message::User(vec![7; 3000]),
        ];
        for msg in &msgs {
            for compress in [false, true] {
                let out = Outbound {
                    compress,
                    ..Outbound::new("dc1", Some(&ring))
                };
                let bytes = encode_stream(msg, &out, &mut rng).unwrap();
                let inbound = Inbound::new("dc1", Some(&ring));
                assert_eq!(
                    decode_stream(&bytes, &inbound).unwrap(),
                    (msg.clone(), bytes.len())
                );
                assert_eq!(
                    stream_need(&bytes[..3], &inbound).unwrap(),
                    StreamNeed::More(5)
                );
                assert_eq!(
                    stream_need(&bytes[..10], &inbound).unwrap(),
                    StreamNeed::More(bytes.len())
                );
                assert_eq!(
                    decode_stream(&bytes, &Inbound::new("dc2", Some(&ring))),
                    Err(WireError::NoKeyCouldDecrypt)
                );
                assert_eq!(
                    decode_stream(&bytes, &plain()),
                    Err(WireError::EncryptedWithoutKeyring)
                );
            }
        }
        let plain_bytes = encode_stream(&msgs[1], &Outbound::new("", None), &mut rng).unwrap();
        assert_eq!(
            decode_stream(&plain_bytes, &Inbound::new("", Some(&ring))),
            Err(WireError::NotEncrypted)
        );
        let huge = [10, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            stream_need(&huge, &Inbound::new("", Some(&ring))),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn stream_start_reads_the_label_header() {
        let inbound = Inbound::new("dc1", None);
        let mut bytes = label_header("dc1").unwrap();
        assert_eq!(
            stream_start(&bytes[..1], &inbound),
            Ok(StreamStart::More(2))
        );
        assert_eq!(
            stream_start(&bytes[..3], &inbound),
            Ok(StreamStart::More(5))
        );
        bytes.push(6);
        assert_eq!(
            stream_start(&bytes, &inbound),
            Ok(StreamStart::Ready {
                label: "dc1",
                header_len: 5
            })
        );
        assert!(matches!(
            stream_start(&[6], &inbound),
            Err(WireError::LabelMismatch { .. })
        ));
        assert_eq!(
            stream_start(&[6], &plain()),
            Ok(StreamStart::Ready {
                label: "",
                header_len: 0
            })
        );
    }

    #[test]
    fn packet_only_types_and_hostile_headers_are_refused() {
        assert!(matches!(
            decode_stream(&[4, 0x80], &plain()),
            Err(WireError::UnexpectedMessageType { got: 4, .. })
        ));
        // A user message announcing 30 MiB.
        let mut big = vec![8];
        msgpack::write_map_len(&mut big, 1);
        msgpack::write_key(&mut big, "UserMsgLen");
        msgpack::write_int(&mut big, 30 << 20);
        assert!(matches!(
            stream_need(&big, &plain()),
            Err(WireError::TooLarge { .. })
        ));
        // A compressed stream that decompresses to nothing.
        let empty = compress_payload(&[]);
        assert_eq!(decode_stream(&empty, &plain()), Err(WireError::Empty));
        assert!(encode_stream_plain(&Message::Nack(Default::default())).is_err());
    }
}
