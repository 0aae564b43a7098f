//! serf's keyring management (`keymanager.go`, the key handlers of
//! `internal_query.go`): the gossip keyring is changed across the pool
//! with internal queries, `_serf_install-key`, `_serf_use-key`,
//! `_serf_remove-key` and `_serf_list-keys`, each carrying a `keyRequest`
//! (`[7]{Key}`) and answered with a `nodeKeyResponse` (`[8]{Keys,
//! Message, PrimaryKey, Result}`).
//!
//! Every member, the querier included, applies the change to its own
//! keyring with memberlist's rules (see [`Keyring`]) and answers; the
//! querier folds the answers into a [`KeySummary`] and finishes when every
//! live member has answered or the query times out. A keyring change is
//! announced with [`SerfEvent::KeyringChanged`] so the shell encrypts with
//! the new primary and persists the ring.
//!
//! Rotation is install (everyone can decrypt the new key), use (everyone
//! encrypts with it), remove (the old key is gone); removing the primary
//! is refused by each member.

use super::crypto::{encode_key, Keyring};
use super::serf::{self, decode_serf, encode_serf, SerfMessage, SerfMessageType};
use super::serf_state::{PendingQuery, Serf};
use super::serf_types::{
    QueryId, QueryParams, SerfError, SerfEvent, INSTALL_KEY_QUERY, LIST_KEYS_QUERY,
    REMOVE_KEY_QUERY, USE_KEY_QUERY,
};
use crate::time::Instant;
use std::collections::BTreeMap;

/// serf's `minEncodedKeyLength`: the least a key adds to a list answer,
/// which bounds how many keys one answer may try to carry.
const MIN_ENCODED_KEY_BYTES: usize = 25;

/// A keyring change or listing to run across the pool.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyOperation {
    Install(Vec<u8>),
    Use(Vec<u8>),
    Remove(Vec<u8>),
    List,
}

impl std::fmt::Debug for KeyOperation {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.query_name())
    }
}

impl KeyOperation {
    pub fn query_name(&self) -> &'static str {
        match self {
            KeyOperation::Install(_) => INSTALL_KEY_QUERY,
            KeyOperation::Use(_) => USE_KEY_QUERY,
            KeyOperation::Remove(_) => REMOVE_KEY_QUERY,
            KeyOperation::List => LIST_KEYS_QUERY,
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            KeyOperation::Install(k) | KeyOperation::Use(k) | KeyOperation::Remove(k) => k,
            KeyOperation::List => &[],
        }
    }
}

/// serf's `KeyResponse`: what the members answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySummary {
    /// Node name → its error (or warning) message.
    pub messages: BTreeMap<String, String>,
    /// Live members when the operation started.
    pub num_nodes: usize,
    pub num_resp: usize,
    pub num_err: usize,
    /// Base64 key → how many members have it installed (list).
    pub keys: BTreeMap<String, usize>,
    /// Base64 key → how many members use it as their primary (list).
    pub primary_keys: BTreeMap<String, usize>,
}

impl KeySummary {
    /// serf's verdict: `None` when every member answered without error.
    pub fn error(&self) -> Option<String> {
        if self.num_err != 0 {
            return Some(format!(
                "{}/{} nodes reported failure",
                self.num_err, self.num_nodes
            ));
        }
        if self.num_resp != self.num_nodes {
            return Some(format!(
                "{}/{} nodes reported success",
                self.num_resp, self.num_nodes
            ));
        }
        None
    }

    /// Folds one member's answer in (`streamKeyResp`). Answers that are
    /// not a key response count as errors.
    pub(super) fn add(&mut self, from: &str, payload: &[u8]) {
        self.num_resp += 1;
        let response = match payload.first().map(|&t| SerfMessageType::from_u8(t)) {
            Some(Some(SerfMessageType::KeyResponse)) => match decode_serf(payload) {
                Ok(SerfMessage::KeyResponse(r)) => r,
                _ => {
                    self.fail(from, "Failed to decode key query response");
                    return;
                }
            },
            _ => {
                self.fail(from, "Invalid key query response type");
                return;
            }
        };
        if !response.result {
            self.num_err += 1;
        }
        if !response.result || !response.message.is_empty() {
            self.messages.insert(from.to_owned(), response.message);
        }
        for key in response.keys {
            *self.keys.entry(key).or_insert(0) += 1;
        }
        // Answers to changes carry no primary key; serf counts them under
        // "", which says nothing, so they are left out.
        if !response.primary_key.is_empty() {
            *self.primary_keys.entry(response.primary_key).or_insert(0) += 1;
        }
    }

    fn fail(&mut self, from: &str, message: &str) {
        self.num_err += 1;
        self.messages.insert(from.to_owned(), message.to_owned());
    }
}

impl Serf {
    /// Runs a key operation across the pool (serf's `KeyManager`):
    /// [`SerfEvent::KeyOperationFinished`] reports every member's answer.
    pub fn key_operation(
        &mut self,
        now: Instant,
        op: &KeyOperation,
        relay_factor: u8,
    ) -> Result<QueryId, SerfError> {
        let request = serf::KeyRequest {
            key: op.key().to_vec(),
        };
        let payload = encode_serf(&SerfMessage::KeyRequest(request));
        let params = QueryParams {
            relay_factor,
            ..QueryParams::default()
        };
        let summary = KeySummary {
            num_nodes: self.list.num_alive(),
            ..KeySummary::default()
        };
        let id = self.start_query(now, op.query_name(), payload, &params, Some(summary))?;
        self.pump(now);
        Ok(id)
    }

    /// Answers one of serf's key queries; `false` when `name` is not one.
    pub(super) fn answer_key_query(&mut self, q: &serf::Query, pending: &PendingQuery) -> bool {
        let response = match q.name.as_str() {
            LIST_KEYS_QUERY => self.list_keys(),
            INSTALL_KEY_QUERY | USE_KEY_QUERY | REMOVE_KEY_QUERY => {
                self.change_keyring(&q.name, &q.payload)
            }
            _ => return false,
        };
        let limit = self.config.query_response_size_limit;
        let Some(payload) = fit_key_response(response, limit, |payload| {
            let answer = self.response_to(q.ltime, q.id, payload.to_vec());
            encode_serf(&SerfMessage::QueryResponse(answer)).len()
        }) else {
            self.stats.oversized_key_responses += 1;
            return true;
        };
        let answer = self.response_to(q.ltime, q.id, payload);
        self.send_query_response(pending, answer);
        true
    }

    fn list_keys(&self) -> serf::KeyResponse {
        match &self.keyring {
            None => serf::KeyResponse {
                message: "Keyring is empty (encryption not enabled)".to_owned(),
                ..serf::KeyResponse::default()
            },
            Some(ring) => serf::KeyResponse {
                result: true,
                keys: ring.keys().iter().map(|k| encode_key(k)).collect(),
                primary_key: encode_key(ring.primary()),
                ..serf::KeyResponse::default()
            },
        }
    }

    /// Install, use or remove a key on our own keyring, with memberlist's
    /// rules and error texts.
    fn change_keyring(&mut self, name: &str, payload: &[u8]) -> serf::KeyResponse {
        let failed = |message: &str| serf::KeyResponse {
            message: message.to_owned(),
            ..serf::KeyResponse::default()
        };
        let Ok(SerfMessage::KeyRequest(request)) = decode_serf(payload) else {
            return failed("Failed to decode key request");
        };
        let Some(ring) = &self.keyring else {
            return failed("No keyring to modify (encryption not enabled)");
        };
        let mut changed: Keyring = ring.clone();
        let outcome = match name {
            INSTALL_KEY_QUERY => changed.install(request.key),
            USE_KEY_QUERY => changed.use_key(&request.key),
            _ => changed.remove(&request.key),
        };
        if let Err(e) = outcome {
            return failed(&e.to_string());
        }
        if Some(&changed) != self.keyring.as_ref() {
            self.keyring = Some(changed.clone());
            self.emit(SerfEvent::KeyringChanged(changed));
        }
        serf::KeyResponse {
            result: true,
            ..serf::KeyResponse::default()
        }
    }
}

/// The encoded key response, cut down to fit `limit` once wrapped in a
/// query response (`keyListResponseWithCorrectSize`): a long key list
/// keeps its first keys and says so. `None` when even no keys won't fit.
fn fit_key_response(
    mut response: serf::KeyResponse,
    limit: usize,
    wrapped_len: impl Fn(&[u8]) -> usize,
) -> Option<Vec<u8>> {
    let payload = encode_serf(&SerfMessage::KeyResponse(response.clone()));
    if wrapped_len(&payload) <= limit {
        return Some(payload);
    }
    let total = response.keys.len();
    let most = (limit / MIN_ENCODED_KEY_BYTES).min(total);
    for shown in (0..=most).rev() {
        response.keys.truncate(shown);
        response.message =
            format!("truncated key list response, showing first {shown} of {total} keys");
        let payload = encode_serf(&SerfMessage::KeyResponse(response.clone()));
        if wrapped_len(&payload) <= limit {
            return Some(payload);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(result: bool, message: &str, keys: &[&str], primary: &str) -> Vec<u8> {
        encode_serf(&SerfMessage::KeyResponse(serf::KeyResponse {
            result,
            message: message.to_owned(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            primary_key: primary.to_owned(),
        }))
    }

    #[test]
    fn summary_counts_keys_errors_and_missing_answers() {
        let mut summary = KeySummary {
            num_nodes: 4,
            ..KeySummary::default()
        };
        summary.add("a", &answer(true, "", &["K1", "K2"], "K1"));
        summary.add("b", &answer(true, "", &["K1"], "K1"));
        assert_eq!(
            summary.error().as_deref(),
            Some("2/4 nodes reported success")
        );
        summary.add(
            "c",
            &answer(false, "Removing the primary key is not allowed", &[], ""),
        );
        summary.add("d", b"\x05garbage");
        assert_eq!(summary.num_resp, 4);
        assert_eq!(
            summary.error().as_deref(),
            Some("2/4 nodes reported failure")
        );
        assert_eq!(
            summary.keys,
            BTreeMap::from([("K1".into(), 2), ("K2".into(), 1)])
        );
        assert_eq!(summary.primary_keys, BTreeMap::from([("K1".into(), 2)]));
        assert_eq!(
            summary.messages["c"],
            "Removing the primary key is not allowed"
        );
        assert_eq!(summary.messages["d"], "Invalid key query response type");
        let mut bad = KeySummary {
            num_nodes: 1,
            ..KeySummary::default()
        };
        bad.add("e", b"\x08\xc1");
        assert_eq!(bad.messages["e"], "Failed to decode key query response");
        let mut fine = KeySummary {
            num_nodes: 1,
            ..KeySummary::default()
        };
        fine.add("f", &answer(true, "", &[], ""));
        assert_eq!(fine.error(), None);
    }

    #[test]
    fn long_key_lists_are_truncated_to_fit() {
        let keys: Vec<String> = (0..60).map(|i| format!("{i:0>44}")).collect();
        let response = serf::KeyResponse {
            result: true,
            keys: keys.clone(),
            primary_key: keys[0].clone(),
            ..serf::KeyResponse::default()
        };
        let payload = fit_key_response(response.clone(), 1024, |p| p.len() + 40).expect("fits");
        assert!(payload.len() + 40 <= 1024);
        let Ok(SerfMessage::KeyResponse(cut)) = decode_serf(&payload) else {
            panic!("a key response");
        };
        assert!(cut.keys.len() < 60 && !cut.keys.is_empty());
        assert_eq!(cut.keys[..], keys[..cut.keys.len()]);
        assert_eq!(
            cut.message,
            format!(
                "truncated key list response, showing first {} of 60 keys",
                cut.keys.len()
            )
        );
        assert!(fit_key_response(response.clone(), 10, |p| p.len()).is_none());
        let small = fit_key_response(response, 1 << 20, |p| p.len()).expect("fits");
        assert!(
            matches!(decode_serf(&small), Ok(SerfMessage::KeyResponse(r)) if r.keys.len() == 60)
        );
    }
}
