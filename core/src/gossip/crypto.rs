//! memberlist's gossip encryption (`security.go`, `keyring.go`).
//!
//! An encrypted payload is `[version][12-byte nonce][AES-GCM ciphertext +
//! 16-byte tag]`. Version 0 PKCS#7-pads the plaintext to the AES block size
//! before sealing (protocol 1 peers); version 1, what every current
//! memberlist sends, does not. The key size picks AES-128/192/256. The
//! additional authenticated data is the gossip label for packets, and
//! `[encryptMsg][length]` + label for streams, so a packet from another
//! pool (label) fails authentication even with the right key.
//!
//! Decryption tries each key of the keyring, primary first, which is what
//! lets a cluster rotate keys: install the new key everywhere, switch the
//! primary, then remove the old one.
//!
//! Nonces: memberlist draws them from the OS; core has no OS randomness, so
//! callers pass a [`Rng`] (or explicit nonce bytes). GCM needs nonces that
//! never repeat under one key, not unpredictable ones: the shell must seed
//! each node's generator from the OS (never a fixed or logged-and-reused
//! seed outside simulation), so two processes never walk the same stream.

use super::error::WireError;
use crate::rng::Rng;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, KeyInit, Nonce};
use base64::Engine;
use std::fmt;

type Aes192Gcm = AesGcm<Aes192, aes_gcm::aead::consts::U12>;

pub const NONCE_BYTES: usize = 12;
pub const TAG_BYTES: usize = 16;
const VERSION_BYTES: usize = 1;
const BLOCK_BYTES: usize = 16;

/// memberlist's `encryptionVersion`: 0 pads (PKCS#7), 1 does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionVersion {
    Padded = 0,
    Unpadded = 1,
}

impl EncryptionVersion {
    /// The version memberlist uses for a protocol version: 0 only for
    /// protocol 1.
    pub fn for_protocol(protocol: u8) -> Self {
        if protocol <= 1 {
            EncryptionVersion::Padded
        } else {
            EncryptionVersion::Unpadded
        }
    }

    /// Bytes encryption adds at most (`encryptOverhead`): 45 and 29.
    pub fn overhead(self) -> usize {
        match self {
            EncryptionVersion::Padded => VERSION_BYTES + NONCE_BYTES + BLOCK_BYTES + TAG_BYTES,
            EncryptionVersion::Unpadded => VERSION_BYTES + NONCE_BYTES + TAG_BYTES,
        }
    }

    /// The exact encrypted length of `plain` bytes (`encryptedLength`).
    pub fn encrypted_len(self, plain: usize) -> usize {
        match self {
            EncryptionVersion::Padded => {
                VERSION_BYTES
                    + NONCE_BYTES
                    + plain
                    + (BLOCK_BYTES - plain % BLOCK_BYTES)
                    + TAG_BYTES
            }
            EncryptionVersion::Unpadded => VERSION_BYTES + NONCE_BYTES + plain + TAG_BYTES,
        }
    }
}

/// Keyring operations memberlist (and serf's key queries) refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringError {
    /// Not 16, 24 or 32 bytes (or not base64).
    BadKey(&'static str),
    /// `use` of a key that is not installed.
    NotInstalled,
    /// `remove` of the primary key.
    RemovePrimary,
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::BadKey(reason) => f.write_str(reason),
            // memberlist's texts: serf sends them to the querying node.
            KeyringError::NotInstalled => f.write_str("Requested key is not in the keyring"),
            KeyringError::RemovePrimary => f.write_str("Removing the primary key is not allowed"),
        }
    }
}

impl std::error::Error for KeyringError {}

/// memberlist's `ValidateKey`.
pub fn validate_key(key: &[u8]) -> Result<(), KeyringError> {
    match key.len() {
        16 | 24 | 32 => Ok(()),
        _ => Err(KeyringError::BadKey("key size must be 16, 24 or 32 bytes")),
    }
}

/// A key as `consul keygen` / `serf keygen` print it (standard base64;
/// keygen makes 32-byte keys, and 16 and 24 are accepted too).
pub fn decode_key(text: &str) -> Result<Vec<u8>, KeyringError> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| KeyringError::BadKey("not valid base64"))?;
    validate_key(&key)?;
    Ok(key)
}

pub fn encode_key(key: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// The installed keys; the first is the primary, used to encrypt.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<Vec<u8>>,
}

impl fmt::Debug for Keyring {
    // Never print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    /// A keyring with `primary` as its only key.
    pub fn new(primary: Vec<u8>) -> Result<Self, KeyringError> {
        validate_key(&primary)?;
        Ok(Keyring {
            keys: vec![primary],
        })
    }

    /// memberlist's `NewKeyring(keys, primary)`.
    pub fn with_keys(primary: Vec<u8>, others: Vec<Vec<u8>>) -> Result<Self, KeyringError> {
        let mut ring = Keyring::new(primary)?;
        for key in others {
            ring.install(key)?;
        }
        Ok(ring)
    }

    /// `AddKey`: installs a secondary key; installing a present key does
    /// nothing.
    pub fn install(&mut self, key: Vec<u8>) -> Result<(), KeyringError> {
        validate_key(&key)?;
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        Ok(())
    }

    /// `UseKey`: makes an installed key the primary.
    pub fn use_key(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        let index = self
            .keys
            .iter()
            .position(|k| k == key)
            .ok_or(KeyringError::NotInstalled)?;
        let key = self.keys.remove(index);
        self.keys.insert(0, key);
        Ok(())
    }

    /// `RemoveKey`: removes a secondary key. Removing the primary is an
    /// error; removing a key that is not installed does nothing (as in
    /// memberlist).
    pub fn remove(&mut self, key: &[u8]) -> Result<(), KeyringError> {
        if self.primary() == key {
            return Err(KeyringError::RemovePrimary);
        }
        self.keys.retain(|k| k != key);
        Ok(())
    }

    pub fn primary(&self) -> &[u8] {
        &self.keys[0]
    }

    /// All keys, primary first (`GetKeys`).
    pub fn keys(&self) -> &[Vec<u8>] {
        &self.keys
    }
}

/// Draws a nonce from the node's generator.
pub fn nonce_from(rng: &mut Rng) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes()[..4]);
    nonce
}

fn seal(key: &[u8], nonce: &[u8; NONCE_BYTES], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let nonce = Nonce::from_slice(nonce);
    let payload = Payload { msg, aad };
    // Keys are validated on entry to the keyring, and sealing a buffer
    // below 64 GiB cannot fail.
    let sealed = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        24 => Aes192Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
        _ => Aes256Gcm::new_from_slice(key).map(|c| c.encrypt(nonce, payload)),
    };
    sealed
        .expect("validated key length")
        .expect("AES-GCM seals any buffer under 64 GiB")
}

fn open(key: &[u8], nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let nonce = Nonce::from_slice(nonce);
    let payload = Payload {
        msg: ciphertext,
        aad,
    };
    let opened = match key.len() {
        16 => Aes128Gcm::new_from_slice(key).ok()?.decrypt(nonce, payload),
        24 => Aes192Gcm::new_from_slice(key).ok()?.decrypt(nonce, payload),
        32 => Aes256Gcm::new_from_slice(key).ok()?.decrypt(nonce, payload),
        _ => return None,
    };
    opened.ok()
}

/// `encryptPayload`: seals `msg` under `key` with `aad`, as `[version]
/// [nonce][ciphertext+tag]`.
pub fn encrypt_payload(
    version: EncryptionVersion,
    key: &[u8],
    nonce: &[u8; NONCE_BYTES],
    msg: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(version.encrypted_len(msg.len()));
    out.push(version as u8);
    out.extend_from_slice(nonce);
    let sealed = match version {
        EncryptionVersion::Unpadded => seal(key, nonce, msg, aad),
        EncryptionVersion::Padded => {
            let pad = BLOCK_BYTES - msg.len() % BLOCK_BYTES;
            let mut padded = Vec::with_capacity(msg.len() + pad);
            padded.extend_from_slice(msg);
            padded.resize(msg.len() + pad, pad as u8);
            seal(key, nonce, &padded, aad)
        }
    };
    out.extend_from_slice(&sealed);
    out
}

/// `decryptPayload`: opens `msg` with the first key of `keyring` that
/// authenticates it.
pub fn decrypt_payload(keyring: &Keyring, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, WireError> {
    let Some(&version) = msg.first() else {
        return Err(WireError::Empty);
    };
    let version = match version {
        0 => EncryptionVersion::Padded,
        1 => EncryptionVersion::Unpadded,
        other => return Err(WireError::UnsupportedEncryptionVersion(other)),
    };
    let min = version.encrypted_len(0);
    if msg.len() < min {
        return Err(WireError::Truncated {
            need: min,
            have: msg.len(),
        });
    }
    let nonce = &msg[VERSION_BYTES..VERSION_BYTES + NONCE_BYTES];
    let ciphertext = &msg[VERSION_BYTES + NONCE_BYTES..];
    for key in keyring.keys() {
        let Some(mut plain) = open(key, nonce, ciphertext, aad) else {
            continue;
        };
        if version == EncryptionVersion::Padded {
            // Authenticated, so only a key holder can get here; still
            // refuse a pad longer than the text instead of trusting it.
            let pad = usize::from(*plain.last().ok_or(WireError::Empty)?);
            if pad > plain.len() {
                return Err(WireError::Msgpack {
                    offset: 0,
                    reason: "PKCS#7 padding longer than the plaintext",
                });
            }
            plain.truncate(plain.len() - pad);
        }
        return Ok(plain);
    }
    Err(WireError::NoKeyCouldDecrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key(len: usize) -> Vec<u8> {
        (1..=len as u8).collect()
    }

    /// `ping{SeqNo: 1, Node: "a"}` as memberlist encodes it.
    const PING_A: &str = "0082a44e6f6465a161a55365714e6f01";

    /// Ciphertexts made by memberlist 0.2.2's own `encryptPayload` (Go
    /// 1.19 crypto/aes + crypto/cipher, random nonces) over `PING_A`, with
    /// keys `01 02 03 ..` of each size, each version, label "" and "dc1".
    const GO_CIPHERTEXTS: [(usize, u8, &str, &str); 6] = [
        (16, 0, "", "0017c3aaea3c887b64f6a8230dfb3a5069a82445f3d940f90056423d0ab749180863073b76d3e4276a78f8818d9f29f30c24f4e1b77115a459e6f96ffc"),
        (16, 1, "dc1", "01d8f2a1317b9ff5e760c1116112a9695b0f9c1ba21b817a9805976c32c3573036ce8a0a9e6948eb9dc3336210"),
        (24, 0, "dc1", "002877c0ba3ebcf97cad3746cfb34ddefeeb717e35dd35c899718d0a405e26e47fdff138a6e22a9be444cd278ee905109228d58dbf970b48a234ce47c2"),
        (24, 1, "", "0120242d43269555b89193a24c1ecaaf32e2cedaa2a7281bc78da06ffb74f4290ad9ad15bbaeae5df1b50c9aaa"),
        (32, 0, "", "006a7aa118ae0ebdb8e7afda8da988b5c8bb3098aff25c2dbdf7dcc73eeb4eaadf4aeaa232c297adf6231130f55d054d86cd26b9612fcb936e92f24ae9"),
        (32, 1, "dc1", "0196f3e51b5d84536ee9eb21d5ddd96922552b6b14a91c89f1fa5e0dfad132a1792f3f0c8cab2eb2c8dac0e368"),
    ];

    #[test]
    fn opens_what_go_memberlist_sealed_and_reseals_identically() {
        for (size, version, label, go) in GO_CIPHERTEXTS {
            let sealed = hex(go);
            let ring = Keyring::new(key(size)).unwrap();
            assert_eq!(
                decrypt_payload(&ring, &sealed, label.as_bytes()).unwrap(),
                hex(PING_A),
                "key {size} version {version} label {label:?}"
            );
            // Same nonce, same bytes: the sealing is memberlist's.
            let nonce: [u8; 12] = sealed[1..13].try_into().unwrap();
            let v = if version == 0 {
                EncryptionVersion::Padded
            } else {
                EncryptionVersion::Unpadded
            };
            assert_eq!(
                encrypt_payload(v, &key(size), &nonce, &hex(PING_A), label.as_bytes()),
                sealed
            );
            assert_eq!(sealed.len(), v.encrypted_len(hex(PING_A).len()));
            // Another label is another pool: refused.
            assert_eq!(
                decrypt_payload(&ring, &sealed, b"dc2"),
                Err(WireError::NoKeyCouldDecrypt)
            );
        }
    }

    #[test]
    fn round_trips_every_size_and_version_and_tries_secondary_keys() {
        let mut rng = Rng::from_seed(3);
        for size in [16, 24, 32] {
            for version in [EncryptionVersion::Padded, EncryptionVersion::Unpadded] {
                for len in [0, 1, 15, 16, 17, 1000] {
                    let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
                    let nonce = nonce_from(&mut rng);
                    let sealed = encrypt_payload(version, &key(size), &nonce, &msg, b"L");
                    assert_eq!(sealed.len(), version.encrypted_len(len));
                    assert!(sealed.len() <= len + version.overhead());
                    let other = Keyring::with_keys(vec![9; 32], vec![key(size)]).unwrap();
                    assert_eq!(decrypt_payload(&other, &sealed, b"L").unwrap(), msg);
                    let wrong = Keyring::new(vec![7; size]).unwrap();
                    assert_eq!(
                        decrypt_payload(&wrong, &sealed, b"L"),
                        Err(WireError::NoKeyCouldDecrypt)
                    );
                    let mut flipped = sealed.clone();
                    *flipped.last_mut().unwrap() ^= 1;
                    assert_eq!(
                        decrypt_payload(&other, &flipped, b"L"),
                        Err(WireError::NoKeyCouldDecrypt)
                    );
                }
            }
        }
        let ring = Keyring::new(key(16)).unwrap();
        assert_eq!(
            decrypt_payload(&ring, &[2; 40], b""),
            Err(WireError::UnsupportedEncryptionVersion(2))
        );
        assert!(matches!(
            decrypt_payload(&ring, &[1; 28], b""),
            Err(WireError::Truncated { need: 29, .. })
        ));
        assert_eq!(decrypt_payload(&ring, &[], b""), Err(WireError::Empty));
    }

    #[test]
    fn keyring_follows_memberlist_rules() {
        let (a, b, c) = (vec![1u8; 16], vec![2u8; 24], vec![3u8; 32]);
        let mut ring = Keyring::new(a.clone()).unwrap();
        ring.install(b.clone()).unwrap();
        ring.install(b.clone()).unwrap();
        ring.install(c.clone()).unwrap();
        assert_eq!(ring.keys(), [a.clone(), b.clone(), c.clone()]);
        assert_eq!(
            ring.install(vec![0; 20]),
            Err(KeyringError::BadKey("key size must be 16, 24 or 32 bytes"))
        );
        assert_eq!(ring.remove(&a), Err(KeyringError::RemovePrimary));
        ring.use_key(&c).unwrap();
        assert_eq!(ring.primary(), &c[..]);
        assert_eq!(ring.keys(), [c.clone(), a.clone(), b.clone()]);
        ring.remove(&a).unwrap();
        ring.remove(&a).unwrap();
        assert_eq!(ring.keys(), [c.clone(), b.clone()]);
        assert_eq!(ring.use_key(&a), Err(KeyringError::NotInstalled));
        assert!(format!("{ring:?}").contains("2 keys"));
    }

    #[test]
    fn keys_read_as_keygen_prints_them() {
        // `consul keygen` prints 32 random bytes in standard base64.
        let text = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
        let key = decode_key(text).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(encode_key(&key), text);
        assert_eq!(decode_key("AAAAAAAAAAAAAAAAAAAAAA==").unwrap(), vec![0; 16]);
        assert!(matches!(decode_key("AAAA"), Err(KeyringError::BadKey(_))));
        assert_eq!(
            decode_key("not base64!"),
            Err(KeyringError::BadKey("not valid base64"))
        );
    }
}
