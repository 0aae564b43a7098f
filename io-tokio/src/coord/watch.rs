//! Watches: blocking-query loops that report each change of an API result
//! (Consul's `watch` package, as `consul watch` and agent `watches` use it).
//!
//! A [`Plan`] polls one endpoint with `?index=` and yields the result only
//! when its *content* differs from the last one it yielded: a blocking query
//! that times out, or wakes for an unrelated write to the same table, is
//! not a change (Consul re-runs handlers on every index bump; users asked
//! for this, hashicorp/consul#571). The first result is always yielded.
//! Errors back off as Consul's plans do: 5 s × failures², at most 180 s.

use super::api::{Api, ApiError};
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Backoff after the n-th consecutive failure: `5s × n²`, capped.
const RETRY_BASE: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(180);

/// What to watch, with Consul's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Key(String),
    KeyPrefix(String),
    Services,
    Nodes,
    Service {
        name: String,
        tags: Vec<String>,
        passing_only: bool,
    },
    /// Checks of one service, or checks in one state (`any` for all).
    ServiceChecks(String),
    StateChecks(String),
    Event(Option<String>),
}

/// The parameters a watch is described with (`consul watch` flags or an
/// agent config `watches` entry).
#[derive(Clone, Debug, Default)]
pub struct Params {
    pub kind: String,
    pub key: Option<String>,
    pub prefix: Option<String>,
    pub service: Option<String>,
    pub tags: Vec<String>,
    pub passing_only: bool,
    pub state: Option<String>,
    pub name: Option<String>,
}

impl Kind {
    /// Validates parameters with Consul's error texts (`watch/funcs.go`).
    pub fn parse(p: &Params) -> Result<Kind, String> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(match p.kind.as_str() {
            "key" => Kind::Key(nonempty(&p.key).ok_or("Must specify a single key to watch")?),
            "keyprefix" => {
                Kind::KeyPrefix(nonempty(&p.prefix).ok_or("Must specify a single prefix to watch")?)
            }
            "services" => Kind::Services,
            "nodes" => Kind::Nodes,
            "service" => Kind::Service {
                name: nonempty(&p.service).ok_or("Must specify a single service to watch")?,
                tags: p.tags.clone(),
                passing_only: p.passing_only,
            },
            "checks" => match (nonempty(&p.service), nonempty(&p.state)) {
                (Some(_), Some(_)) => return Err("Cannot specify service and state".into()),
                (Some(service), None) => Kind::ServiceChecks(service),
                (None, state) => Kind::StateChecks(state.unwrap_or_else(|| "any".into())),
            },
            "event" => Kind::Event(nonempty(&p.name)),
            "" => return Err("Watch type must be specified".into()),
            other => return Err(format!("Unsupported watch type: {other}")),
        })
    }

    fn request(&self) -> (String, Vec<(&'static str, Option<String>)>) {
        use crate::client::percent_encode_path as enc;
        match self {
            Kind::Key(key) => (format!("/v1/kv/{}", enc(key)), Vec::new()),
            Kind::KeyPrefix(prefix) => (format!("/v1/kv/{}", enc(prefix)), vec![("recurse", None)]),
            Kind::Services => ("/v1/catalog/services".into(), Vec::new()),
            Kind::Nodes => ("/v1/catalog/nodes".into(), Vec::new()),
            Kind::Service {
                name,
                tags,
                passing_only,
            } => {
                let mut params: Vec<(&'static str, Option<String>)> =
                    tags.iter().map(|t| ("tag", Some(t.clone()))).collect();
                if *passing_only {
                    params.push(("passing", None));
                }
                (format!("/v1/health/service/{}", enc(name)), params)
            }
            Kind::ServiceChecks(service) => {
                (format!("/v1/health/checks/{}", enc(service)), Vec::new())
            }
            Kind::StateChecks(state) => (format!("/v1/health/state/{}", enc(state)), Vec::new()),
            Kind::Event(name) => (
                "/v1/event/list".into(),
                name.iter().map(|n| ("name", Some(n.clone()))).collect(),
            ),
        }
    }

    /// The result as handlers see it: a single key is the entry itself
    /// (not a one-element array); a missing key or empty prefix is `null`.
    fn result(&self, status: u16, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        match self {
            Kind::Key(_) | Kind::KeyPrefix(_) if status == 404 => Ok(b"null".to_vec()),
            Kind::Key(_) => {
                let entries: Vec<&RawValue> = serde_json::from_slice(body)
                    .map_err(|e| ApiError::Decode(format!("failed to decode KV entry: {e}")))?;
                Ok(entries
                    .first()
                    .map_or(b"null".to_vec(), |raw| raw.get().as_bytes().to_vec()))
            }
            _ => Ok(body.to_vec()),
        }
    }
}

/// One change: the blocking index and the result's JSON (compact).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub index: u64,
    pub body: Vec<u8>,
}

/// A watch in progress.
pub struct Plan {
    api: Api,
    kind: Kind,
    stale: bool,
    wait: Option<Duration>,
    index: u64,
    last: Option<Vec<u8>>,
    failures: u32,
}

impl Plan {
    pub fn new(api: Api, kind: Kind, stale: bool) -> Plan {
        Plan {
            api,
            kind,
            stale,
            wait: None,
            index: 0,
            last: None,
            failures: 0,
        }
    }

    /// Bounds each blocking query (the server's default is 5 min).
    pub fn with_wait(mut self, wait: Duration) -> Plan {
        self.wait = Some(wait);
        self
    }

    /// One blocking query: `Ok(Some)` when the content changed (always
    /// on the first call), `Ok(None)` when it did not.
    pub fn poll(&mut self) -> Result<Option<Change>, ApiError> {
        let (path, mut params) = self.kind.request();
        if self.index > 0 {
            params.push(("index", Some(self.index.to_string())));
            if let Some(wait) = self.wait {
                params.push(("wait", Some(format!("{}ms", wait.as_millis()))));
            }
        }
        if self.stale {
            params.push(("stale", None));
        }
        let response = self.api.get_raw(&path, params)?;
        let missing_ok = matches!(self.kind, Kind::Key(_) | Kind::KeyPrefix(_));
        if !(response.is_success() || missing_ok && response.status == 404) {
            response.into_result()?;
            return Ok(None);
        }
        let index = response.consul_index().unwrap_or(0);
        let previous = self.index;
        let mut body = self.kind.result(response.status, &response.body)?;
        if let Kind::Event(_) = self.kind {
            // Event indexes are not monotonic: a change is a different
            // index, and only the events after the last one seen count.
            self.index = index;
            if self.last.is_some() && index == previous {
                return Ok(None);
            }
            body = events_after(&body, previous)?;
        } else {
            // An index going backwards (a restored snapshot, a new leader
            // with another history) restarts the watch instead of spinning.
            self.index = if index < previous { 0 } else { index };
        }
        if self.last.as_deref() == Some(body.as_slice()) {
            return Ok(None);
        }
        self.last = Some(body.clone());
        Ok(Some(Change { index, body }))
    }

    /// Runs until `stop`: `on_change` for each change, `on_error` with the
    /// backoff before each retry.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_change: impl FnMut(&Change),
        mut on_error: impl FnMut(&ApiError, Duration),
    ) {
        while !stop.load(Ordering::SeqCst) {
            match self.poll() {
                Ok(Some(change)) => {
                    self.failures = 0;
                    on_change(&change);
                }
                Ok(None) => self.failures = 0,
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let backoff = backoff(self.failures);
                    on_error(&e, backoff);
                    self.index = 0;
                    super::sleep_unless_stopped(backoff, stop, None);
                }
            }
        }
    }
}

/// The events of a listing after the one whose ID maps to `seen` (all of
/// them when none does), as Consul's event watch prunes.
fn events_after(body: &[u8], seen: u64) -> Result<Vec<u8>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(rename = "ID", borrow)]
        id: &'a str,
    }
    let events: Vec<&RawValue> = serde_json::from_slice(body)
        .map_err(|e| ApiError::Decode(format!("failed to decode events: {e}")))?;
    let start = events
        .iter()
        .position(|raw| {
            serde_json::from_str::<Id>(raw.get())
                .is_ok_and(|e| tribune_core::event::id_index(e.id) == seen)
        })
        .map_or(0, |i| i + 1);
    let parts: Vec<&str> = events[start..].iter().map(|raw| raw.get()).collect();
    Ok(format!("[{}]", parts.join(",")).into_bytes())
}

/// Consul's plan backoff: `5s × failures²`, at most 180 s.
pub fn backoff(failures: u32) -> Duration {
    let squared = failures.saturating_mul(failures);
    RETRY_BASE.saturating_mul(squared).min(RETRY_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: &str) -> Params {
        Params {
            kind: kind.into(),
            ..Params::default()
        }
    }

    #[test]
    fn parameters_are_validated_with_consuls_texts() {
        assert_eq!(
            Kind::parse(&params("key")),
            Err("Must specify a single key to watch".into())
        );
        assert_eq!(
            Kind::parse(&params("keyprefix")),
            Err("Must specify a single prefix to watch".into())
        );
        assert_eq!(
            Kind::parse(&params("service")),
            Err("Must specify a single service to watch".into())
        );
        assert_eq!(
            Kind::parse(&params("bogus")),
            Err("Unsupported watch type: bogus".into())
        );
        let both = Params {
            service: Some("web".into()),
            state: Some("critical".into()),
            ..params("checks")
        };
        assert_eq!(
            Kind::parse(&both),
            Err("Cannot specify service and state".into())
        );
        assert_eq!(
            Kind::parse(&params("checks")),
            Ok(Kind::StateChecks("any".into()))
        );
        assert_eq!(Kind::parse(&params("event")), Ok(Kind::Event(None)));
    }

    #[test]
    fn key_results_unwrap_the_array_and_keep_field_order() -> Result<(), ApiError> {
        let kind = Kind::Key("k".into());
        let body = br#"[{"LockIndex":0,"Key":"k","Flags":0,"Value":"dg==","CreateIndex":5,"ModifyIndex":5}]"#;
        assert_eq!(
            kind.result(200, body)?,
            br#"{"LockIndex":0,"Key":"k","Flags":0,"Value":"dg==","CreateIndex":5,"ModifyIndex":5}"#
        );
        assert_eq!(kind.result(404, b"")?, b"null");
        assert_eq!(Kind::KeyPrefix("p".into()).result(404, b"")?, b"null");
        assert!(kind.result(200, b"{broken").is_err());
        Ok(())
    }

    #[test]
    fn event_listings_are_pruned_to_unseen_events() -> Result<(), ApiError> {
        let a = "01234567-89ab-cdef-fedc-ba9876543210";
        let b = "11111111-2222-4333-8444-555555555555";
        let body = format!(r#"[{{"ID":"{a}","Name":"x"}},{{"ID":"{b}","Name":"y"}}]"#);
        let seen_a = tribune_core::event::id_index(a);
        assert_eq!(
            String::from_utf8_lossy(&events_after(body.as_bytes(), seen_a)?),
            format!(r#"[{{"ID":"{b}","Name":"y"}}]"#)
        );
        assert_eq!(events_after(body.as_bytes(), 1)?, body.as_bytes());
        Ok(())
    }

    #[test]
    fn backoff_grows_quadratically_to_three_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(6), Duration::from_secs(180));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(180));
    }
}
