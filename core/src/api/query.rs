//! Query-string parsing and the parameters every read shares (`index`,
//! `wait`, `stale`, `consistent`, `dc`), with Consul's error texts.

use crate::api::ApiError;
use crate::limits::{BLOCKING_WAIT_DEFAULT, BLOCKING_WAIT_MAX};
use crate::time::{parse_duration, Duration};

/// Decoded `name[=value]` pairs in request order. A name without `=` has no
/// value (`?recurse`), which Consul treats as present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, Option<String>)>,
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding; `plus_is_space` for query strings. Invalid escapes or
/// non-UTF-8 results are refused.
pub fn percent_decode(raw: &str, plus_is_space: bool) -> Result<String, ApiError> {
    if !raw.contains(['%', '+']) {
        return Ok(raw.to_string());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => (hex(h), hex(l)),
                    _ => (None, None),
                };
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(ApiError::BadEscape),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::BadEscape)
}

/// Parses a raw query string (without the `?`).
pub fn parse_query(raw: &str) -> Result<Query, ApiError> {
    let mut pairs = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(percent_decode(v, true)?)),
            None => (part, None),
        };
        pairs.push((percent_decode(name, true)?, value));
    }
    Ok(Query { pairs })
}

impl Query {
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// The last value given for `name` (empty string for a bare flag).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
            .collect()
    }

    /// A boolean flag: present without value, or `true`/`1`.
    pub fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            None => false,
            Some(v) => !matches!(v, "false" | "0"),
        }
    }

    /// An unsigned integer parameter; `err` is returned when it does not
    /// parse.
    pub fn u64(&self, name: &str, err: ApiError) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| err),
        }
    }
}

/// Consul's three read modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    #[default]
    Default,
    Consistent,
    Stale,
}

impl Consistency {
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Consistent => "consistent",
            Consistency::Stale => "stale",
        }
    }
}

/// What every read endpoint accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// `?index=`: block until the result's index is above this.
    pub min_index: Option<u64>,
    /// How long to block (default 5m, capped at 10m), before jitter.
    pub wait: Duration,
    pub consistency: Consistency,
    pub datacenter: Option<String>,
}

pub fn read_options(query: &Query) -> Result<ReadOptions, ApiError> {
    let stale = query.has("stale");
    let consistent = query.has("consistent");
    if stale && consistent {
        return Err(ApiError::ConflictingConsistency);
    }
    let min_index = query
        .u64("index", ApiError::InvalidIndex)?
        .filter(|&i| i > 0);
    let wait = match query.get("wait") {
        None | Some("") => BLOCKING_WAIT_DEFAULT,
        Some(text) => parse_duration(text).map_err(|_| ApiError::InvalidWait)?,
    };
    let consistency = match (stale, consistent) {
        (true, _) => Consistency::Stale,
        (_, true) => Consistency::Consistent,
        _ => Consistency::Default,
    };
    Ok(ReadOptions {
        min_index,
        wait: wait.min(BLOCKING_WAIT_MAX),
        consistency,
        datacenter: query
            .get("dc")
            .filter(|d| !d.is_empty())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_flags() {
        let q = parse_query("recurse&separator=%2F&tag=a&tag=b+c&flags=7").expect("valid");
        assert!(q.has("recurse") && q.flag("recurse"));
        assert_eq!(q.get("separator"), Some("/"));
        assert_eq!(q.all("tag"), vec!["a", "b c"]);
        assert_eq!(q.u64("flags", ApiError::InvalidIndex), Ok(Some(7)));
        assert!(!q.flag("keys"));
        assert_eq!(parse_query("a=%zz"), Err(ApiError::BadEscape));
        assert_eq!(parse_query("a=%ff"), Err(ApiError::BadEscape));
    }

    #[test]
    fn read_options_follow_consul() {
        let opts =
            read_options(&parse_query("index=12&wait=30s&stale").expect("valid")).expect("ok");
        assert_eq!(opts.min_index, Some(12));
        assert_eq!(opts.wait, Duration::from_secs(30));
        assert_eq!(opts.consistency, Consistency::Stale);
        let capped = read_options(&parse_query("wait=1h").expect("valid")).expect("ok");
        assert_eq!(capped.wait, BLOCKING_WAIT_MAX);
        let default = read_options(&Query::default()).expect("ok");
        assert_eq!(default.wait, BLOCKING_WAIT_DEFAULT);
        assert_eq!(default.min_index, None);
        let bad = |raw: &str| read_options(&parse_query(raw).expect("valid"));
        assert_eq!(
            bad("stale&consistent"),
            Err(ApiError::ConflictingConsistency)
        );
        assert_eq!(bad("index=x"), Err(ApiError::InvalidIndex));
        assert_eq!(bad("index=-1"), Err(ApiError::InvalidIndex));
        assert_eq!(bad("wait=10"), Err(ApiError::InvalidWait));
    }
}
