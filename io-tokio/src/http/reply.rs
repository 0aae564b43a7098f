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
    /// `X-Consul-ContentHash` for hash-blocking agent endpoints.
    pub content_hash: Option<String>,
    /// JSON bodies can be re-indented for `?pretty`.
    json: bool,
    raw_value: bool,
    /// `X-Consul-KnownLeader` and `X-Consul-LastContact` (ms) of a read.
    pub contact: (bool, u64),
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
            content_hash: None,
            json: true,
            raw_value: false,
            contact: (true, 0),
        }
    }

    pub fn text(text: &str) -> Reply {
        Reply {
            status: 200,
            body: Bytes::copy_from_slice(text.as_bytes()),
            content_type: "text/plain; charset=utf-8",
            index: None,
            consistency: None,
            content_hash: None,
            json: false,
            raw_value: false,
            contact: (true, 0),
        }
    }

    /// `?raw` KV values: served as inert text (Consul's CVE-2020-25864 fix).
    /// JSON that is already encoded (compact, as Consul sends it).
    pub fn raw_json(body: Vec<u8>) -> Reply {
        Reply {
            body: body.into(),
            ..Reply::json(&())
        }
    }

    pub fn raw(value: &[u8]) -> Reply {
        Reply {
            raw_value: true,
            contact: (true, 0),
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
            Bytes::from(reindent(&self.body))
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
                .header("X-Consul-Knownleader", self.contact.0.to_string())
                .header("X-Consul-Lastcontact", self.contact.1.to_string());
        }
        if let Some(consistency) = self.consistency {
            builder = builder.header("X-Consul-Effective-Consistency", consistency.as_str());
        }
        if let Some(hash) = &self.content_hash {
            builder = builder.header("X-Consul-ContentHash", hash.as_str());
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

/// Re-indents compact JSON with 4 spaces (Consul's `?pretty`), keeping the
/// field order, which a round trip through `serde_json::Value` would sort.
pub(crate) fn reindent(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 4));
    };
    for (i, &b) in compact.iter().enumerate() {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                let closes_at_once = matches!(compact.get(i + 1), Some(b'}' | b']'));
                depth += 1;
                if !closes_at_once {
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if !matches!(compact.get(i.wrapping_sub(1)), Some(b'{' | b'[')) {
                    newline(&mut out, depth);
                }
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reindent_keeps_order_and_strings() {
        let compact = br#"{"Z":1,"A":[],"S":"a,{b}\"c:","L":[1,{"k":{}}]}"#;
        let pretty = String::from_utf8(super::reindent(compact)).expect("utf8");
        let expected = "{\n    \"Z\": 1,\n    \"A\": [],\n    \"S\": \"a,{b}\\\"c:\",\n    \"L\": [\n        1,\n        {\n            \"k\": {}\n        }\n    ]\n}\n";
        assert_eq!(pretty, expected);
        let reparsed: serde_json::Value = serde_json::from_str(&pretty).expect("still JSON");
        let original: serde_json::Value = serde_json::from_slice(compact).expect("JSON");
        assert_eq!(reparsed, original);
    }
}
