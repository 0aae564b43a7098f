//! Consul's HTTP API model without HTTP: query parameters, request bodies,
//! response shapes and the errors a request can earn. The shell maps
//! [`ApiError`] to a status code and Consul's text in one table.

pub mod body;
pub mod query;
pub mod render;

use crate::limits::{KV_VALUE_BYTES_MAX, TXN_OPS_MAX};
use std::fmt;

/// A request the API refuses, with Consul's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    BadEscape,
    InvalidIndex,
    InvalidWait,
    ConflictingConsistency,
    MissingKeyName,
    KeyTooLong { len: usize },
    ConflictingFlags(&'static str),
    InvalidFlags,
    InvalidCas,
    ValueTooLarge { len: usize },
    BodyTooLarge { len: usize, max: usize },
    TooManyTxnOps { count: usize },
    BodyDecode(String),
    InvalidSession(String),
    InvalidState(String),
    MissingField(&'static str),
    Invalid(String),
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::BadEscape => f.write_str("Invalid URL escape in request"),
            ApiError::InvalidIndex => f.write_str("Invalid index"),
            ApiError::InvalidWait => f.write_str("Invalid wait time"),
            ApiError::ConflictingConsistency => {
                f.write_str("Cannot specify ?stale with ?consistent, conflicting semantics.")
            }
            ApiError::MissingKeyName => f.write_str("Missing key name"),
            ApiError::KeyTooLong { len } => write!(f, "Key of {len} bytes is too long"),
            ApiError::ConflictingFlags(which) => write!(f, "Conflicting flags: {which}"),
            ApiError::InvalidFlags => f.write_str("Invalid flags"),
            ApiError::InvalidCas => f.write_str("Invalid cas index"),
            ApiError::ValueTooLarge { len } => write!(
                f,
                "Request body({len} bytes) too large, max size: {KV_VALUE_BYTES_MAX} bytes. \
                 See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
            ),
            ApiError::BodyTooLarge { len, max } => {
                write!(f, "Request body({len} bytes) too large, max size: {max} bytes.")
            }
            ApiError::TooManyTxnOps { count } => write!(
                f,
                "Transaction contains too many operations ({count} > {TXN_OPS_MAX})"
            ),
            ApiError::BodyDecode(why) => write!(f, "Request decode failed: {why}"),
            ApiError::InvalidSession(id) => write!(f, "Invalid session \"{id}\""),
            ApiError::InvalidState(state) => write!(f, "Invalid state: {state}"),
            ApiError::MissingField(what) => write!(f, "Missing {what}"),
            ApiError::Invalid(why) => f.write_str(why),
        }
    }
}
