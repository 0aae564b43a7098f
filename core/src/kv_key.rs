//! The key type of the KV table's B-trees.
//!
//! Most keys are short (`service/web/config`), so they are stored inline in
//! the tree node: a lookup then compares bytes that are already in cache
//! instead of following one pointer per comparison, which made up most of
//! the cost of an apply when keys were `Box<str>` (perf: over half the time
//! in `memcmp` on cold heap keys). Longer keys fall back to the heap.
//!
//! Ordering and equality are those of the key's bytes, which for UTF-8 is
//! the order of the strings, and the type borrows as `[u8]`, so maps keyed
//! by it are searched with `key.as_bytes()` without building a `KvKey`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Longest key kept inline; with the length and the variant tag the whole
/// type is 24 bytes, the same as a `String`.
pub const KV_KEY_INLINE_BYTES_MAX: usize = 22;

#[derive(Clone)]
pub enum KvKey {
    Inline {
        len: u8,
        bytes: [u8; KV_KEY_INLINE_BYTES_MAX],
    },
    Heap(Box<str>),
}

const _: () = assert!(std::mem::size_of::<KvKey>() == 24);
const _: () = assert!(KV_KEY_INLINE_BYTES_MAX < u8::MAX as usize);

impl KvKey {
    pub fn new(key: &str) -> KvKey {
        if key.len() <= KV_KEY_INLINE_BYTES_MAX {
            let mut bytes = [0u8; KV_KEY_INLINE_BYTES_MAX];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            KvKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KvKey::Heap(key.into())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            KvKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KvKey::Heap(key) => key.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Inline bytes were copied from a &str, so they are UTF-8.
            KvKey::Inline { .. } => std::str::from_utf8(self.as_bytes())
                .expect("inline KV keys are built from UTF-8 strings"),
            KvKey::Heap(key) => key,
        }
    }
}

impl PartialEq for KvKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for KvKey {}

impl PartialOrd for KvKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for KvKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (
                KvKey::Inline { len, bytes },
                KvKey::Inline {
                    len: other_len,
                    bytes: other_bytes,
                },
            ) => {
                // Zero-padded arrays compare like the keys, with the length
                // breaking ties (a key sorts before any key it is a prefix
                // of). Comparing three big-endian words avoids a memcmp call
                // per comparison in the B-tree search, the hot path of apply.
                words(bytes)
                    .cmp(&words(other_bytes))
                    .then(len.cmp(other_len))
            }
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

/// The inline bytes as big-endian words, most significant first.
fn words(bytes: &[u8; KV_KEY_INLINE_BYTES_MAX]) -> [u64; 3] {
    let word = |range: std::ops::Range<usize>| {
        let mut chunk = [0u8; 8];
        chunk[..range.len()].copy_from_slice(&bytes[range]);
        u64::from_be_bytes(chunk)
    };
    [word(0..8), word(8..16), word(16..KV_KEY_INLINE_BYTES_MAX)]
}

impl Borrow<[u8]> for KvKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for KvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for KvKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KvKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let key = String::deserialize(deserializer)?;
        Ok(KvKey::new(&key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_like_strings_across_representations() {
        let long = "k".repeat(KV_KEY_INLINE_BYTES_MAX + 5);
        let edge = "k".repeat(KV_KEY_INLINE_BYTES_MAX);
        let mut keys = vec![
            "b",
            "a/b",
            "",
            "a",
            "é",
            long.as_str(),
            "kkkk",
            "a/",
            "a\0",
            "a\0\0",
            "\0",
            edge.as_str(),
            "kkkkkkkkkkkkkkkkkkkkkk\u{7f}",
            "zzzzzzzzzzzzzzzzzzzzz",
            "zzzzzzzz\u{1}",
        ];
        let mut wrapped: Vec<KvKey> = keys.iter().map(|k| KvKey::new(k)).collect();
        keys.sort();
        wrapped.sort();
        let back: Vec<&str> = wrapped.iter().map(KvKey::as_str).collect();
        assert_eq!(back, keys);
        assert!(matches!(KvKey::new(&long), KvKey::Heap(_)));
        assert!(matches!(KvKey::new("short"), KvKey::Inline { .. }));
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    KvKey::new(a).cmp(&KvKey::new(b)),
                    a.cmp(b),
                    "{a:?} vs {b:?}"
                );
                assert_eq!(KvKey::new(a) == KvKey::new(b), a == b);
            }
        }
        let exact = "x".repeat(KV_KEY_INLINE_BYTES_MAX);
        assert_eq!(KvKey::new(&exact).as_str(), exact);
    }

    proptest::proptest! {
        #[test]
        fn order_and_equality_match_str(a in "[\\x00a-c\\u{7f}é]{0,26}", b in "[\\x00a-c\\u{7f}é]{0,26}") {
            proptest::prop_assert_eq!(KvKey::new(&a).cmp(&KvKey::new(&b)), a.cmp(&b));
            proptest::prop_assert_eq!(KvKey::new(&a) == KvKey::new(&b), a == b);
        }

        /// Prefix relations, where the length tie-break decides.
        #[test]
        fn a_key_sorts_before_its_extensions(a in "[\\x00ab]{0,24}", suffix in "[\\x00ab]{0,4}") {
            let b = format!("{a}{suffix}");
            proptest::prop_assert_eq!(KvKey::new(&a).cmp(&KvKey::new(&b)), a.as_str().cmp(&b));
            proptest::prop_assert_eq!(KvKey::new(&b).cmp(&KvKey::new(&a)), b.as_str().cmp(&a));
        }
    }
}
