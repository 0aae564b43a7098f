//! Successful responses with Consul's headers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde::Serialize;
use tribune_core::api::query::Consistency;

pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub content_type: &'static str,
    /// `X-Consul-Index` and friends for reads; never 0.
    pub index: Option<u64>,
    pub consistency: Option<Consistency>,
    /// JSON bodies can be re-indented for `?pretty`.
    json: bool,
    raw_value: bool,
}

impl Reply {
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Reply {
        // Serializing in-memory values made of strings and numbers can't fail.
        let body = serde_json::to_vec(value).expect("response serializes");
        Reply {
            status: 200,
            body: body.into(),
            content_type: "application/json",
            index: None,
            consistency: None,
            json: true,
            raw_value: false,
        }
    }

    pub fn text(text: &str) -> Reply {
        Reply {
            status: 200,
            body: Bytes::copy_from_slice(text.as_bytes()),
            content_type: "text/plain; charset=utf-8",
            index: None,
            consistency: None,
            json: false,
            raw_value: false,
        }
    }

    /// `?raw` KV values: served as inert text (Consul's CVE-2020-25864 fix).
    pub fn raw(value: &[u8]) -> Reply {
        Reply {
            raw_value: true,
            body: Bytes::copy_from_slice(value),
            ..Reply::text("")
        }
    }

    pub fn empty() -> Reply {
        Reply::text("")
    }

    pub fn bool(value: bool) -> Reply {
        Reply::json(&value)
    }

    pub fn not_found() -> Reply {
        Reply {
            status: 404,
            ..Reply::text("")
        }
    }

    pub fn with_status(mut self, status: u16) -> Reply {
        self.status = status;
        self
    }

    pub fn with_index(mut self, index: u64, consistency: Consistency) -> Reply {
        self.index = Some(index.max(1));
        self.consistency = Some(consistency);
        self
    }

    pub fn into_response(self, pretty: bool) -> Response<Full<Bytes>> {
        let body = if pretty && self.json {
            serde_json::from_slice::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| serde_json::to_vec_pretty(&v).ok())
                .map(Bytes::from)
                .unwrap_or(self.body)
        } else {
            self.body
        };
        let mut builder = Response::builder()
            .status(self.status)
            .header("Content-Type", self.content_type)
            .header("X-Consul-Default-Acl-Policy", "allow");
        if let Some(index) = self.index {
            builder = builder
                .header("X-Consul-Index", index.to_string())
                .header("X-Consul-Knownleader", "true")
                .header("X-Consul-Lastcontact", "0");
        }
        if let Some(consistency) = self.consistency {
            builder = builder.header("X-Consul-Effective-Consistency", consistency.as_str());
        }
        if self.raw_value {
            builder = builder
                .header("X-Content-Type-Options", "nosniff")
                .header("Content-Security-Policy", "sandbox");
        }
        builder
            .body(Full::new(body))
            .expect("static header names and values are valid")
    }
}
