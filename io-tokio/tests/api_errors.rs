//! Requests the API must refuse, with Consul's status codes and texts, and
//! without disturbing the agent or its store. Every test writes a sentinel
//! first and checks at the end that the agent still answers and that the
//! whole KV store is exactly as it was.

mod support;

use serde_json::{json, Value};
use support::{create_session, Agent, Resp};

/// The KV store as JSON (every entry with its indexes), after writing a
/// sentinel key.
fn seed(agent: &Agent) -> Value {
    agent
        .put("/v1/kv/sentinel?flags=17", "precious")
        .expect(200);
    agent.get("/v1/kv/?recurse").expect(200).json()
}

#[track_caller]
fn assert_intact(agent: &Agent, before: &Value) {
    agent.get("/v1/status/leader").expect(200);
    let after = agent.get("/v1/kv/?recurse").expect(200).json();
    assert_eq!(&after, before, "the store changed");
    let raw = agent.get("/v1/kv/sentinel?raw").expect(200);
    assert_eq!(raw.body, b"precious");
}

#[track_caller]
fn assert_text(resp: &Resp, status: u16, text: &str) {
    assert_eq!(resp.status, status, "body {:?}", resp.text());
    assert_eq!(resp.text().trim_end(), text);
}

#[track_caller]
fn assert_starts(resp: &Resp, status: u16, prefix: &str) {
    assert_eq!(resp.status, status, "body {:?}", resp.text());
    assert!(
        resp.text().starts_with(prefix),
        "body {:?} should start with {prefix:?}",
        resp.text()
    );
}

#[test]
fn malformed_and_mistyped_json_bodies() {
    let agent = Agent::start();
    let before = seed(&agent);
    for path in [
        "/v1/catalog/register",
        "/v1/catalog/deregister",
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/session/create",
        "/v1/txn",
    ] {
        let resp = agent.put(path, "{\"Node\": ");
        assert_starts(&resp, 400, "Request decode failed");
        let resp = agent.put(path, "not json at all");
        assert_starts(&resp, 400, "Request decode failed");
    }
    // Wrong field types.
    let resp = agent.put_json("/v1/agent/service/register", &json!({"Name": 5}));
    assert_starts(&resp, 400, "Request decode failed");
    let resp = agent.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n", "Address": "a", "Service": {"Service": "s", "Port": "eighty"}}),
    );
    assert_eq!(resp.status, 400, "{:?}", resp.text());
    let resp = agent.put_json("/v1/session/create", &json!({"Name": ["list"]}));
    assert_eq!(resp.status, 400, "{:?}", resp.text());
    let resp = agent.put_json("/v1/txn", &json!({"KV": {"Verb": "set"}}));
    assert_eq!(
        resp.status,
        400,
        "txn body must be an array: {:?}",
        resp.text()
    );
    let resp = agent.put_json(
        "/v1/txn",
        &json!([{"KV": {"Verb": "set", "Key": "x", "Value": "%%% not base64"}}]),
    );
    assert_eq!(resp.status, 400, "{:?}", resp.text());
    // Nothing was registered.
    let nodes = agent.get("/v1/catalog/nodes").expect(200).json();
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(
        agent.get("/v1/agent/services").expect(200).json(),
        json!({})
    );
    assert_eq!(agent.get("/v1/session/list").expect(200).json(), json!([]));
    assert_intact(&agent, &before);
}

#[test]
fn bad_query_parameters() {
    let agent = Agent::start();
    let before = seed(&agent);
    let conflict = "Cannot specify ?stale with ?consistent, conflicting semantics.";
    for path in [
        "/v1/kv/sentinel?stale&consistent",
        "/v1/catalog/nodes?stale&consistent",
        "/v1/health/service/x?consistent&stale",
    ] {
        assert_text(&agent.get(path), 400, conflict);
    }
    for path in [
        "/v1/kv/sentinel?index=abc",
        "/v1/kv/sentinel?index=-1",
        "/v1/catalog/services?index=1.5",
        "/v1/session/list?index=x",
    ] {
        assert_text(&agent.get(path), 400, "Invalid index");
    }
    for path in [
        "/v1/kv/sentinel?index=1&wait=forever",
        "/v1/kv/sentinel?wait=10",
        "/v1/catalog/nodes?index=1&wait=5x",
    ] {
        assert_text(&agent.get(path), 400, "Invalid wait time");
    }
    // Bad flags/cas on a write change nothing.
    assert_eq!(agent.put("/v1/kv/sentinel?flags=x", "evil").status, 400);
    assert_eq!(agent.put("/v1/kv/sentinel?cas=x", "evil").status, 400);
    assert_eq!(agent.delete("/v1/kv/sentinel?cas=x").status, 400);
    // Conflicting write flags.
    let resp = agent.put("/v1/kv/sentinel?cas=0&acquire=x", "evil");
    assert_starts(&resp, 400, "Conflicting flags");
    let resp = agent.delete("/v1/kv/sentinel?recurse&cas=1");
    assert_starts(&resp, 400, "Conflicting flags");
    assert_intact(&agent, &before);
}

#[test]
fn wrong_method_and_unknown_path() {
    let agent = Agent::start();
    let before = seed(&agent);
    for (method, path, must_allow) in [
        ("POST", "/v1/kv/sentinel", "PUT"),
        ("PATCH", "/v1/kv/sentinel", "GET"),
        ("GET", "/v1/session/create", "PUT"),
        ("DELETE", "/v1/catalog/nodes", "GET"),
        ("GET", "/v1/catalog/register", "PUT"),
        ("PUT", "/v1/health/state/any", "GET"),
        ("POST", "/v1/txn", "PUT"),
        ("GET", "/v1/agent/service/register", "PUT"),
        ("PUT", "/v1/status/leader", "GET"),
    ] {
        let resp = agent.request(method, path, Some(b"evil"));
        assert_eq!(resp.status, 405, "{method} {path}: {:?}", resp.text());
        let allow = resp
            .header("Allow")
            .unwrap_or_else(|| panic!("{method} {path}: 405 without Allow"));
        assert!(
            allow.split(',').any(|m| m.trim() == must_allow),
            "{method} {path}: Allow {allow:?} lacks {must_allow}"
        );
    }
    for path in [
        "/v1/nope",
        "/v1/catalog/bogus",
        "/v1/health/bogus/x",
        "/v1/agent/bogus",
        "/v1/session/bogus",
        "/v1/status/bogus",
        "/v2/kv/sentinel",
        "/kv/sentinel",
    ] {
        let resp = agent.get(path);
        assert_eq!(resp.status, 404, "{path}: {:?}", resp.text());
    }
    assert_intact(&agent, &before);
}

#[test]
fn unknown_datacenter() {
    let agent = Agent::start();
    let before = seed(&agent);
    for path in [
        "/v1/kv/sentinel?dc=other",
        "/v1/kv/?recurse&dc=other",
        "/v1/catalog/services?dc=other",
        "/v1/catalog/nodes?dc=other",
        "/v1/health/service/x?dc=other",
        "/v1/session/list?dc=other",
        "/v1/status/leader?dc=other",
    ] {
        assert_text(&agent.get(path), 500, "No path to datacenter");
    }
    assert_text(
        &agent.put("/v1/kv/sentinel?dc=other", "evil"),
        500,
        "No path to datacenter",
    );
    assert_text(
        &agent.put("/v1/kv/new-key?dc=other", "evil"),
        500,
        "No path to datacenter",
    );
    assert_text(
        &agent.delete("/v1/kv/sentinel?dc=other"),
        500,
        "No path to datacenter",
    );
    assert_text(
        &agent.put_json("/v1/session/create?dc=other", &json!({})),
        500,
        "No path to datacenter",
    );
    assert_text(
        &agent.put_json(
            "/v1/txn?dc=other",
            &json!([{"KV": {"Verb": "delete", "Key": "sentinel"}}]),
        ),
        500,
        "No path to datacenter",
    );
    assert_eq!(agent.get("/v1/session/list").expect(200).json(), json!([]));
    assert_intact(&agent, &before);
}

#[test]
fn acquire_with_unknown_session_is_refused() {
    let agent = Agent::start();
    let before = seed(&agent);
    let ghost = "6f2f5a1e-1111-4222-8333-444455556666";
    let resp = agent.put(&format!("/v1/kv/sentinel?acquire={ghost}"), "evil");
    assert_eq!(resp.status, 500, "{:?}", resp.text());
    assert!(
        resp.text().to_lowercase().contains("invalid session"),
        "{:?}",
        resp.text()
    );
    // Release is Consul's kvsUnlockTxn: no session lookup, a session that
    // does not exist holds nothing, so the answer is a plain `false` (lock
    // clients release after their session was invalidated and expect this).
    let resp = agent.put(&format!("/v1/kv/sentinel?release={ghost}"), "evil");
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    assert_eq!(resp.text(), "false");
    let resp = agent.put(&format!("/v1/kv/newkey?acquire={ghost}"), "evil");
    assert_eq!(resp.status, 500, "{:?}", resp.text());
    let resp = agent.put("/v1/kv/sentinel?acquire=not-a-uuid", "evil");
    assert_eq!(resp.status, 500, "{:?}", resp.text());
    // A destroyed session is as unknown as one never created.
    let gone = create_session(&agent, &json!({}));
    agent
        .put(&format!("/v1/session/destroy/{gone}"), "")
        .expect(200);
    let resp = agent.put(&format!("/v1/kv/sentinel?acquire={gone}"), "evil");
    assert_eq!(resp.status, 500, "{:?}", resp.text());
    // Same in a transaction: nothing is written.
    let resp = agent.put_json(
        "/v1/txn",
        &json!([
            {"KV": {"Verb": "set", "Key": "txnkey", "Value": support::b64("v")}},
            {"KV": {"Verb": "lock", "Key": "sentinel", "Session": ghost}}
        ]),
    );
    assert!(
        resp.status == 409 || resp.status == 500,
        "txn lock with unknown session: {} {:?}",
        resp.status,
        resp.text()
    );
    assert_intact(&agent, &before);
}

#[test]
fn oversized_bodies() {
    let agent = Agent::start();
    let before = seed(&agent);
    // A syntactically valid registration just over 1 MiB.
    let padding = "x".repeat(1024 * 1024 + 16);
    let body = json!({"Node": "huge", "Address": "10.0.0.1", "NodeMeta": {"pad": padding}});
    let resp = agent.put_json("/v1/catalog/register", &body);
    assert_starts(&resp, 413, "Request body(");
    // The same, chunked (no Content-Length: the limit applies while reading).
    let text = body.to_string();
    let mut message = format!(
        "PUT /v1/catalog/register HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        text.len()
    )
    .into_bytes();
    message.extend_from_slice(text.as_bytes());
    message.extend_from_slice(b"\r\n0\r\n\r\n");
    let resp = agent.raw(&message).expect("chunked request answered");
    assert_eq!(resp.status, 413, "{:?}", resp.text());
    // Too large a transaction body.
    let resp = agent.put_json(
        "/v1/txn",
        &json!([{"KV": {"Verb": "set", "Key": "big", "Value": support::b64(&padding)}}]),
    );
    assert_eq!(resp.status, 413, "{:?}", resp.text());
    let nodes = agent.get("/v1/catalog/nodes").expect(200).json();
    assert!(
        !nodes.to_string().contains("huge"),
        "nothing registered: {nodes}"
    );
    assert_intact(&agent, &before);
}

#[test]
fn garbage_requests_and_bad_escapes() {
    let agent = Agent::start();
    let before = seed(&agent);
    for garbage in [
        &b"GARBAGE\x00\x01 junk\r\n\r\n"[..],
        b"\xff\xfe\xfd\r\n\r\n",
        b"GET /v1/kv/\xff HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/kv/a b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /v1/kv/sentinel HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\nevil",
    ] {
        let resp = agent
            .raw(garbage)
            .unwrap_or_else(|e| panic!("{garbage:?}: no answer: {e}"));
        assert_eq!(resp.status, 400, "{garbage:?}");
    }
    for path in [
        "/v1/kv/%zz",
        "/v1/kv/a%ffb",
        "/v1/kv/sentinel%",
        "/v1/kv/sentinel?recurse=%zz",
        "/v1/kv/sentinel?%zz",
    ] {
        assert_text(&agent.get(path), 400, "Invalid URL escape in request");
    }
    assert_text(
        &agent.put("/v1/kv/sentinel%zz", "evil"),
        400,
        "Invalid URL escape in request",
    );
    // Escaped key names are decoded (and a valid escape reaches the key).
    agent.put("/v1/kv/with%20space", "ok").expect(200);
    let rows = agent.get("/v1/kv/with%20space").expect(200);
    assert_eq!(rows.json()[0]["Key"], "with space");
    agent.delete("/v1/kv/with%20space").expect(200);
    assert_intact(&agent, &before);
}

/// Consul's `http_max_conns_per_client` (200): one more connection from the
/// same IP is answered 429 with Consul's text and closed; closing the others
/// frees the slots.
#[test]
fn connections_per_client_are_limited() {
    use std::io::{Read, Write};
    let agent = Agent::start();
    let addr = ("127.0.0.1", agent.port);
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        // A full request/response per connection proves the server accepted
        // it (and counted it) before the next one is opened.
        stream
            .write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).expect("read");
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "held connections are served"
        );
        held.push(stream);
    }
    let mut extra = std::net::TcpStream::connect(addr).expect("connect");
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    extra.read_to_string(&mut answer).expect("read the refusal");
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.ends_with(
        "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    ));
    drop(held);
    support::wait_for(std::time::Duration::from_secs(5), "slots freed", || {
        agent
            .client()
            .try_request("GET", "/v1/status/leader", None, &[])
            .ok()
            .filter(|r| r.status == 200)
    });
}
