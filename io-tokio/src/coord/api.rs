//! The few HTTP calls the coordination recipes make, typed.
//!
//! Errors keep the Go client's distinction that the recipes depend on: a
//! transport failure or a 5xx is *retryable* (Consul's `IsRetryableError`),
//! anything else is final.

use crate::client::{path_with_query, percent_encode_path, ClientError, HttpClient, Response};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tribune_core::coord::KvPair;

/// A KV entry as the HTTP API returns it (`Value` base64 or null).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct WireEntry {
    key: String,
    flags: u64,
    value: Option<String>,
    session: Option<String>,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
}

impl TryFrom<WireEntry> for KvPair {
    type Error = String;

    fn try_from(wire: WireEntry) -> Result<KvPair, String> {
        let value = match wire.value.as_deref() {
            None | Some("") => Vec::new(),
            Some(text) => BASE64
                .decode(text)
                .map_err(|e| format!("invalid base64 value for key {}: {e}", wire.key))?,
        };
        Ok(KvPair {
            key: wire.key,
            flags: wire.flags,
            value,
            session: wire.session.unwrap_or_default(),
            create_index: wire.create_index,
            modify_index: wire.modify_index,
            lock_index: wire.lock_index,
        })
    }
}

/// Decodes a `/v1/kv` JSON answer (an array of entries).
pub fn decode_pairs(body: &[u8]) -> Result<Vec<KvPair>, String> {
    let entries: Option<Vec<WireEntry>> =
        serde_json::from_slice(body).map_err(|e| format!("failed to decode KV entries: {e}"))?;
    entries
        .unwrap_or_default()
        .into_iter()
        .map(KvPair::try_from)
        .collect()
}

/// Why a call failed.
#[derive(Debug)]
pub enum ApiError {
    /// No answer: connection refused, reset, timed out.
    Transport(String),
    /// An answer with a non-2xx status.
    Status { code: u16, body: String },
    /// A 2xx answer that did not parse.
    Decode(String),
}

impl ApiError {
    /// Whether retrying may help (Consul's `api.IsRetryableError`).
    pub fn retryable(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Status { code, .. } => *code >= 500,
            ApiError::Decode(_) => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Transport(e) | ApiError::Decode(e) => f.write_str(e),
            ApiError::Status { code, body } => {
                write!(f, "Unexpected response code: {code} ({body})")
            }
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> ApiError {
        match e {
            ClientError::Status { status, body } => ApiError::Status { code: status, body },
            other => ApiError::Transport(other.to_string()),
        }
    }
}

/// Options of one read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Query {
    /// Block until the index passes this (0: answer at once).
    pub index: u64,
    /// How long the server may block (`wait`); its default when `None`.
    pub wait: Option<Duration>,
    /// Linearizable read (`?consistent`).
    pub consistent: bool,
}

/// A session as the recipes create it.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub name: String,
    pub ttl: Duration,
    /// `release` or `delete`.
    pub behavior: &'static str,
    /// `None`: the server's default (15 s).
    pub lock_delay: Option<Duration>,
}

/// An agent's HTTP API plus the datacenter to address.
#[derive(Clone, Debug)]
pub struct Api {
    client: HttpClient,
    datacenter: Option<String>,
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Api {
    pub fn new(client: HttpClient, datacenter: Option<String>) -> Api {
        Api { client, datacenter }
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    fn params(
        &self,
        mut params: Vec<(&'static str, Option<String>)>,
    ) -> Vec<(&str, Option<String>)> {
        if let Some(dc) = &self.datacenter {
            params.push(("dc", Some(dc.clone())));
        }
        params
    }

    fn query_params(&self, q: &Query) -> Vec<(&'static str, Option<String>)> {
        let mut params = Vec::new();
        if q.index > 0 {
            params.push(("index", Some(q.index.to_string())));
            if let Some(wait) = q.wait {
                params.push(("wait", Some(go_duration(wait))));
            }
        }
        if q.consistent {
            params.push(("consistent", None));
        }
        params
    }

    /// GET with any status returned as is.
    pub fn get_raw(
        &self,
        path: &str,
        params: Vec<(&'static str, Option<String>)>,
    ) -> Result<Response, ApiError> {
        let target = path_with_query(path, &self.params(params));
        Ok(self.client.get(&target)?)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        params: Vec<(&'static str, Option<String>)>,
        body: Option<&[u8]>,
    ) -> Result<Response, ApiError> {
        let target = path_with_query(path, &self.params(params));
        Ok(self.client.request(method, &target, body)?.into_result()?)
    }

    /// Reads one key; `None` when it does not exist. Returns the index.
    pub fn kv_get(&self, key: &str, q: &Query) -> Result<(Option<KvPair>, u64), ApiError> {
        let (pairs, index) = self.kv_read(key, q, false)?;
        Ok((pairs.into_iter().find(|pair| pair.key == key), index))
    }

    /// Reads every key under `prefix`.
    pub fn kv_list(&self, prefix: &str, q: &Query) -> Result<(Vec<KvPair>, u64), ApiError> {
        self.kv_read(prefix, q, true)
    }

    fn kv_read(&self, key: &str, q: &Query, recurse: bool) -> Result<(Vec<KvPair>, u64), ApiError> {
        let mut params = self.query_params(q);
        if recurse {
            params.push(("recurse", None));
        }
        let response = self.get_raw(&format!("/v1/kv/{}", percent_encode_path(key)), params)?;
        let index = response.consul_index().unwrap_or(0);
        if response.status == 404 {
            return Ok((Vec::new(), index));
        }
        let response = response.into_result()?;
        let pairs = decode_pairs(&response.body).map_err(ApiError::Decode)?;
        Ok((pairs, index))
    }

    /// PUTs `value` at `key` with `params` (`acquire`, `release`, `cas`,
    /// `flags`); returns the server's verdict.
    pub fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        params: Vec<(&'static str, Option<String>)>,
    ) -> Result<bool, ApiError> {
        let response = self.send(
            "PUT",
            &format!("/v1/kv/{}", percent_encode_path(key)),
            params,
            Some(value),
        )?;
        parse_bool(&response)
    }

    /// PUTs `body` and decodes the JSON answer.
    pub fn put_json(
        &self,
        path: &str,
        params: Vec<(&'static str, Option<String>)>,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        let response = self.send("PUT", path, params, Some(body))?;
        serde_json::from_slice(&response.body)
            .map_err(|e| ApiError::Decode(format!("failed to decode response: {e}")))
    }

    /// Deletes `key`, only at `cas` when given; returns the verdict.
    pub fn kv_delete(&self, key: &str, cas: Option<u64>) -> Result<bool, ApiError> {
        let params = cas
            .map(|index| vec![("cas", Some(index.to_string()))])
            .unwrap_or_default();
        let response = self.send(
            "DELETE",
            &format!("/v1/kv/{}", percent_encode_path(key)),
            params,
            None,
        )?;
        parse_bool(&response)
    }

    /// Creates a session on the agent's node; returns its ID.
    pub fn session_create(&self, spec: &SessionSpec) -> Result<String, ApiError> {
        let mut body = serde_json::json!({
            "Name": spec.name,
            "TTL": go_duration(spec.ttl),
            "Behavior": spec.behavior,
        });
        if let (Some(delay), Some(object)) = (spec.lock_delay, body.as_object_mut()) {
            object.insert("LockDelay".into(), go_duration(delay).into());
        }
        let body = body.to_string();
        let response = self.send(
            "PUT",
            "/v1/session/create",
            Vec::new(),
            Some(body.as_bytes()),
        )?;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "ID")]
            id: String,
        }
        serde_json::from_slice::<Created>(&response.body)
            .map(|created| created.id)
            .map_err(|e| ApiError::Decode(format!("failed to decode session: {e}")))
    }

    /// Renews a session; `false` when the session no longer exists.
    pub fn session_renew(&self, id: &str) -> Result<bool, ApiError> {
        let target = path_with_query(&format!("/v1/session/renew/{id}"), &self.params(Vec::new()));
        let response = self.client.request("PUT", &target, None)?;
        if response.status == 404 {
            return Ok(false);
        }
        response.into_result()?;
        Ok(true)
    }

    pub fn session_destroy(&self, id: &str) -> Result<(), ApiError> {
        self.send(
            "PUT",
            &format!("/v1/session/destroy/{id}"),
            Vec::new(),
            None,
        )?;
        Ok(())
    }

    /// The agent's node name (`/v1/agent/self`), which doubles as a check
    /// that the agent answers.
    pub fn node_name(&self) -> Result<String, ApiError> {
        let response = self.client.get("/v1/agent/self")?.into_result()?;
        let value: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| ApiError::Decode(format!("failed to decode agent info: {e}")))?;
        Ok(value["Config"]["NodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

fn parse_bool(response: &Response) -> Result<bool, ApiError> {
    match response.text().trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(ApiError::Decode(format!(
            "expected true or false, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_decode_null_and_base64_values() -> Result<(), String> {
        let json = br#"[{"LockIndex":1,"Key":"k","Flags":7,"Value":null,"Session":"s",
                        "CreateIndex":3,"ModifyIndex":4},
                       {"Key":"v","Value":"dGVzdA=="}]"#;
        let pairs = decode_pairs(json)?;
        assert_eq!(pairs[0].value, b"");
        assert_eq!(pairs[0].session, "s");
        assert_eq!((pairs[0].lock_index, pairs[0].flags), (1, 7));
        assert_eq!(pairs[1].value, b"test");
        assert!(decode_pairs(br#"[{"Key":"x","Value":"!!"}]"#).is_err());
        assert!(decode_pairs(b"{").is_err());
        assert_eq!(decode_pairs(b"null")?, Vec::new());
        Ok(())
    }

    #[test]
    fn retryable_errors_match_the_go_client() {
        assert!(ApiError::Transport("refused".into()).retryable());
        let status = |code| ApiError::Status {
            code,
            body: String::new(),
        };
        assert!(status(500).retryable());
        assert!(!status(403).retryable());
        assert!(!ApiError::Decode("x".into()).retryable());
        assert_eq!(status(500).to_string(), "Unexpected response code: 500 ()");
    }
}
