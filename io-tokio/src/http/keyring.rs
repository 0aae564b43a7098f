//! `/v1/operator/keyring`: Consul's gossip keyring API over serf's key
//! queries. `GET` lists the keys installed across the LAN pool, `POST`
//! installs a key, `PUT` makes it the primary and `DELETE` removes it
//! (bodies `{"Key": "<base64>"}`). Each runs one key query over the pool
//! (see `tribune_core::gossip::KeyOperation`) and answers when every
//! member has, or when the query times out.
//!
//! As in Consul, any member's failure, or a member that did not answer,
//! makes the request a 500 whose text lists the pool's error and each
//! member's message (go-multierror's format). tribune has no WAN pool, so
//! the list holds the LAN entry only.

use crate::http::{Ctx, HttpError, Reply};
use hyper::Method;
use serde::Serialize;
use std::collections::BTreeMap;
use tribune_core::api::body::decode_keyring_request;
use tribune_core::gossip::{KeyOperation, KeySummary};

/// Consul's largest `relay-factor`.
const RELAY_FACTOR_MAX: u8 = 5;

/// Consul's `KeyringResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    messages: BTreeMap<String, String>,
    keys: BTreeMap<String, usize>,
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
}

pub async fn handle(mut ctx: Ctx) -> Result<Reply, HttpError> {
    ctx.require(&[Method::GET, Method::POST, Method::PUT, Method::DELETE])?;
    let relay_factor = relay_factor(&ctx)?;
    if local_only(&ctx)? && ctx.method != Method::GET {
        return Err(HttpError::BadRequest(
            "Error validating local-only: local-only can only be set for list requests".into(),
        ));
    }
    let op = if ctx.method == Method::GET {
        KeyOperation::List
    } else {
        let key = decode_keyring_request(&ctx.json_body().await?)?;
        match ctx.method {
            Method::POST => KeyOperation::Install(key),
            Method::PUT => KeyOperation::Use(key),
            _ => KeyOperation::Remove(key),
        }
    };
    let Some(gossip) = ctx.node.gossip() else {
        return Err(HttpError::Internal(
            "a -dev agent runs no gossip pool, so it has no keyring".into(),
        ));
    };
    let summary = gossip
        .key_operation(op, relay_factor)
        .await
        .map_err(HttpError::Internal)?;
    let datacenter = ctx.node.identity.datacenter.clone();
    if let Some(error) = summary.error() {
        return Err(HttpError::Internal(multierror(
            &datacenter,
            &error,
            &summary,
        )));
    }
    if ctx.method != Method::GET {
        return Ok(Reply::empty());
    }
    Ok(Reply::json(&[KeyringResponse {
        wan: false,
        datacenter,
        segment: String::new(),
        messages: summary.messages,
        keys: summary.keys,
        primary_keys: summary.primary_keys,
        num_nodes: summary.num_nodes,
    }]))
}

/// `?relay-factor=N`, 0 to 5 (Consul's `ParseRelayFactor`).
fn relay_factor(ctx: &Ctx) -> Result<u8, HttpError> {
    let Some(text) = ctx.query.get("relay-factor").filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = |why: &str| HttpError::BadRequest(format!("Error parsing relay factor: {why}"));
    let n: i64 = text
        .parse()
        .map_err(|_| bad(&format!("strconv.Atoi: parsing {text:?}: invalid syntax")))?;
    u8::try_from(n)
        .ok()
        .filter(|n| *n <= RELAY_FACTOR_MAX)
        .ok_or_else(|| bad("Relay factor must be in range: [0, 5]"))
}

/// `?local-only=<bool>`: every query is local here (no WAN pool), but
/// Consul refuses it on anything but a list.
fn local_only(ctx: &Ctx) -> Result<bool, HttpError> {
    match ctx.query.get("local-only") {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(HttpError::BadRequest(format!(
            "Error parsing local-only: strconv.ParseBool: parsing {other:?}: invalid syntax"
        ))),
    }
}

/// Consul's `keyringErrorsOrNil` text, as go-multierror formats it: the
/// pool's verdict, then each member's message.
fn multierror(datacenter: &str, error: &str, summary: &KeySummary) -> String {
    let mut errors = vec![format!("{datacenter} (LAN) error: {error}")];
    errors.extend(
        summary
            .messages
            .iter()
            .map(|(node, message)| format!("{node}: {message}")),
    );
    let head = match errors.len() {
        1 => "1 error occurred:".to_string(),
        n => format!("{n} errors occurred:"),
    };
    let items: String = errors.iter().map(|e| format!("\n\t* {e}")).collect();
    format!("{head}{items}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_consuls_multierror() {
        let summary = KeySummary {
            messages: BTreeMap::from([
                (
                    "s1".into(),
                    "Removing the primary key is not allowed".into(),
                ),
                (
                    "s2".into(),
                    "Removing the primary key is not allowed".into(),
                ),
            ]),
            num_nodes: 2,
            num_resp: 2,
            num_err: 2,
            ..KeySummary::default()
        };
        let error = summary.error().expect("failed");
        assert_eq!(
            multierror("dc1", &error, &summary),
            "3 errors occurred:\n\t* dc1 (LAN) error: 2/2 nodes reported failure\n\
             \t* s1: Removing the primary key is not allowed\n\
             \t* s2: Removing the primary key is not allowed\n\n"
        );
        let quiet = KeySummary {
            num_nodes: 3,
            num_resp: 2,
            ..KeySummary::default()
        };
        assert_eq!(
            multierror("dc1", &quiet.error().expect("short"), &quiet),
            "1 error occurred:\n\t* dc1 (LAN) error: 2/3 nodes reported success\n\n"
        );
    }
}
