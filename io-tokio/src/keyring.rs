//! The gossip keyring on disk and at start, as Consul keeps it:
//! `<data-dir>/serf/local.keyring` holds a JSON array of base64 keys,
//! primary first (the format serf's `writeKeyringFile` writes and Consul's
//! `loadKeyringFile` reads). At start an existing file wins over
//! `-encrypt` (with a warning, as Consul warns); without a file, the
//! `-encrypt` key starts a new ring and the file is written. Every change
//! the pool makes with the key queries is written back, so a restarted
//! server comes back with the keys it had.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tribune_core::gossip::crypto::{decode_key, encode_key, Keyring};
use tribune_core::limits::CONFIG_FILE_BYTES_MAX;

/// Consul's `encrypt_verify_incoming` / `encrypt_verify_outgoing` (both on
/// by default; off only while rolling encryption out) and the keyring
/// file that key-query changes are written to.
#[derive(Clone, Debug)]
pub struct Encryption {
    /// Refuse plaintext packets and streams when a keyring is set.
    pub verify_incoming: bool,
    /// Encrypt what we send when a keyring is set.
    pub verify_outgoing: bool,
    pub keyring_file: Option<PathBuf>,
}

impl Default for Encryption {
    fn default() -> Self {
        Encryption {
            verify_incoming: true,
            verify_outgoing: true,
            keyring_file: None,
        }
    }
}

/// The keyring the gossip transport's stream tasks read. serf owns the
/// real one; the driver replaces this copy whenever a key query changes
/// it.
#[derive(Clone, Debug, Default)]
pub struct KeyringCell(Arc<RwLock<Option<Arc<Keyring>>>>);

impl KeyringCell {
    pub fn new(ring: Option<Keyring>) -> Self {
        KeyringCell(Arc::new(RwLock::new(ring.map(Arc::new))))
    }

    pub fn get(&self) -> Option<Arc<Keyring>> {
        self.0.read().ok().and_then(|ring| ring.clone())
    }

    /// A key query changed the keyring: stream tasks use `ring` from now
    /// on, and it is written to `file`. A failed write is logged: the
    /// pool already runs with the new keys, and the next change retries.
    pub fn replace(&self, ring: &Keyring, file: Option<&Path>) {
        if let Ok(mut shared) = self.0.write() {
            *shared = Some(Arc::new(ring.clone()));
        }
        crate::log::info(&format!(
            "serf: keyring changed: {} keys installed",
            ring.keys().len()
        ));
        if let Some(path) = file {
            if let Err(e) = write(path, ring) {
                crate::log::error(&format!("serf: {e}"));
            }
        }
    }
}

/// A server's gossip encryption from its config: the keyring to start
/// with (see [`load_or_init`]) and how to use it.
pub fn setup(
    config: &crate::agent::config::AgentConfig,
    data_dir: &Path,
) -> Result<(Option<Keyring>, Encryption), String> {
    let path = keyring_path(data_dir);
    let keyring = load_or_init(&path, config.encrypt.as_deref())?;
    let encryption = Encryption {
        verify_incoming: config.encrypt_verify_incoming,
        verify_outgoing: config.encrypt_verify_outgoing,
        keyring_file: Some(path),
    };
    Ok((keyring, encryption))
}

/// Where a server keeps its LAN keyring (Consul's `serf/local.keyring`).
pub fn keyring_path(data_dir: &Path) -> PathBuf {
    data_dir.join("serf").join("local.keyring")
}

/// The keyring to start gossip with: the file's if there is one, else a
/// new one from `encrypt` (written to the file), else none.
pub fn load_or_init(path: &Path, encrypt: Option<&str>) -> Result<Option<Keyring>, String> {
    match std::fs::metadata(path) {
        Ok(_) => {
            let ring = read(path)?;
            if encrypt.is_some() {
                crate::log::warn(&format!(
                    "agent: WARNING: LAN keyring exists but -encrypt given, using keyring {}",
                    path.display()
                ));
            }
            Ok(Some(ring))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(text) = encrypt else {
                return Ok(None);
            };
            let key = decode_encrypt(text).map_err(|e| format!("encrypt has invalid key: {e}"))?;
            let ring = Keyring::new(key).map_err(|e| format!("encrypt has invalid key: {e}"))?;
            write(path, &ring)?;
            Ok(Some(ring))
        }
        Err(e) => Err(format!("Error reading keyring {}: {e}", path.display())),
    }
}

/// An `-encrypt` / `encrypt` value: base64 of 16, 24 or 32 bytes.
pub fn decode_encrypt(text: &str) -> Result<Vec<u8>, String> {
    decode_key(text).map_err(|e| e.to_string())
}

/// Parses a keyring file: a JSON array of base64 keys, primary first.
pub fn parse(bytes: &[u8]) -> Result<Keyring, String> {
    let keys: Vec<String> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON array of keys: {e}"))?;
    let mut decoded = Vec::with_capacity(keys.len());
    for (i, text) in keys.iter().enumerate() {
        decoded.push(decode_key(text).map_err(|e| format!("key {i}: {e}"))?);
    }
    let mut keys = decoded.into_iter();
    let primary = keys.next().ok_or("no keys in the keyring")?;
    Keyring::with_keys(primary, keys.collect()).map_err(|e| e.to_string())
}

/// The file's text: pretty JSON like serf's (`MarshalIndent`, two spaces).
pub fn render(ring: &Keyring) -> String {
    let keys: Vec<String> = ring.keys().iter().map(|k| encode_key(k)).collect();
    serde_json::to_string_pretty(&keys).unwrap_or_else(|_| "[]".to_string())
}

pub fn read(path: &Path) -> Result<Keyring, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("Error reading keyring {}: {e}", path.display()))?;
    if bytes.len() > CONFIG_FILE_BYTES_MAX {
        return Err(format!("keyring {} is too large", path.display()));
    }
    parse(&bytes).map_err(|e| format!("Error parsing keyring {}: {e}", path.display()))
}

/// Writes the keyring durably (temp file, fsync, rename), readable by
/// the owner only: it holds the keys to the pool.
pub fn write(path: &Path, ring: &Keyring) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| format!("Error writing keyring {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(fail)?;
    file.write_all(render(ring).as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&temp, path).map_err(fail)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}

/// `tribune keygen`'s key: 32 bytes from the OS's random source.
pub fn generate_key() -> Result<String, String> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("Error reading random data: {e}"))?;
    Ok(encode_key(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    const K2: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tribune-keyring-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_file_is_a_json_array_primary_first() {
        let ring = parse(format!("[\"{K2}\", \"{K1}\"]").as_bytes()).expect("valid");
        assert_eq!(ring.primary(), &[0u8; 16][..]);
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(render(&ring), format!("[\n  \"{K2}\",\n  \"{K1}\"\n]"));
        assert_eq!(parse(render(&ring).as_bytes()).expect("round trip"), ring);
        for bad in ["", "{}", "[]", "[1]", "[\"AAAA\"]", "[\"not base64!\"]"] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse(b"[\"AAAA\"]").unwrap_err(),
            "key 0: key size must be 16, 24 or 32 bytes"
        );
    }

    #[test]
    fn an_existing_file_wins_over_encrypt() {
        let dir = temp_dir("wins");
        let path = keyring_path(&dir);
        assert_eq!(load_or_init(&path, None).expect("no file, no key"), None);
        assert!(!path.exists());
        let ring = load_or_init(&path, Some(K1))
            .expect("new ring")
            .expect("on");
        assert_eq!(encode_key(ring.primary()), K1);
        assert_eq!(read(&path).expect("written"), ring);
        let again = load_or_init(&path, Some(K2)).expect("file").expect("on");
        assert_eq!(again, ring, "the file wins");
        let mut rotated = ring.clone();
        rotated.install(vec![0; 16]).expect("valid");
        rotated.use_key(&[0; 16]).expect("installed");
        write(&path, &rotated).expect("written");
        assert_eq!(load_or_init(&path, None).expect("file"), Some(rotated));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage").expect("write");
        assert!(
            load_or_init(&path, Some(K1)).is_err(),
            "a bad file is an error"
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(load_or_init(&keyring_path(&dir), Some("short")).is_err());
    }

    #[test]
    fn keygen_makes_distinct_32_byte_keys() {
        let a = generate_key().expect("random");
        let b = generate_key().expect("random");
        assert_ne!(a, b);
        assert_eq!(decode_key(&a).expect("valid").len(), 32);
    }
}
