//! `/v1/kv`, `/v1/txn` and blocking queries on KV, against the real binary
//! over real sockets.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{b64, create_session, kv_entry, string, uint, unb64, Agent};

/// KV entry fields Consul always sends, with their JSON types.
fn assert_kv_shape(entry: &Value) {
    for field in ["LockIndex", "Flags", "CreateIndex", "ModifyIndex"] {
        uint(entry, field);
    }
    string(entry, "Key");
    assert!(
        entry["Value"].is_string() || entry["Value"].is_null(),
        "Value is base64 or null: {entry}"
    );
    assert!(uint(entry, "CreateIndex") > 0, "{entry}");
    assert!(uint(entry, "ModifyIndex") >= uint(entry, "CreateIndex"));
}

#[test]
fn kv_put_get_raw_and_flags() {
    let agent = Agent::start();
    let put = agent.put("/v1/kv/app/config?flags=42", "hello").expect(200);
    assert_eq!(put.text(), "true");
    assert!(put
        .header("Content-Type")
        .is_some_and(|c| c.starts_with("application/json")));

    let resp = agent.get("/v1/kv/app/config").expect(200);
    let index = resp.index();
    let rows = resp.json();
    let entry = &rows.as_array().expect("array")[0];
    assert_kv_shape(entry);
    assert_eq!(entry["Key"], "app/config");
    assert_eq!(entry["Flags"], 42);
    assert_eq!(entry["LockIndex"], 0);
    assert_eq!(unb64(&entry["Value"]), b"hello");
    assert!(entry.get("Session").is_none(), "no Session when unlocked");
    let created = uint(entry, "CreateIndex");
    assert_eq!(uint(entry, "ModifyIndex"), created);
    assert_eq!(index, created, "a key's X-Consul-Index is its ModifyIndex");

    // Overwrite: CreateIndex stays, ModifyIndex and Flags move.
    agent.put("/v1/kv/app/config?flags=7", "world").expect(200);
    let entry = kv_entry(&agent, "app/config");
    assert_eq!(uint(&entry, "CreateIndex"), created);
    assert!(uint(&entry, "ModifyIndex") > created);
    assert_eq!(entry["Flags"], 7);
    assert_eq!(unb64(&entry["Value"]), b"world");

    // Without ?flags the flags reset to 0, as in Consul.
    agent.put("/v1/kv/app/config", "again").expect(200);
    assert_eq!(kv_entry(&agent, "app/config")["Flags"], 0);

    // ?raw: bare bytes served as inert text.
    let binary: Vec<u8> = (0..=255u8).collect();
    agent.put("/v1/kv/app/blob", &binary).expect(200);
    let raw = agent.get("/v1/kv/app/blob?raw").expect(200);
    raw.index();
    assert_eq!(raw.body, binary);
    assert!(raw
        .header("Content-Type")
        .is_some_and(|c| c.starts_with("text/plain")));
    assert_eq!(raw.header("X-Content-Type-Options"), Some("nosniff"));

    // Empty value: Value is null in JSON, empty with ?raw.
    agent.put("/v1/kv/app/empty", "").expect(200);
    let entry = kv_entry(&agent, "app/empty");
    assert!(entry["Value"].is_null(), "{entry}");
    assert!(agent
        .get("/v1/kv/app/empty?raw")
        .expect(200)
        .body
        .is_empty());
}

#[test]
fn kv_recurse_and_keys_with_separator() {
    let agent = Agent::start();
    for key in ["a/b", "a/c/d", "a/c/e", "ab", "b"] {
        agent
            .put(&format!("/v1/kv/{key}"), key.to_uppercase())
            .expect(200);
    }
    let resp = agent.get("/v1/kv/a?recurse").expect(200);
    let index = resp.index();
    let rows = resp.json();
    let rows = rows.as_array().expect("array");
    let keys: Vec<&str> = rows.iter().map(|e| string(e, "Key")).collect();
    assert_eq!(
        keys,
        ["a/b", "a/c/d", "a/c/e", "ab"],
        "sorted, prefix match"
    );
    for e in rows {
        assert_kv_shape(e);
        assert_eq!(
            unb64(&e["Value"]),
            string(e, "Key").to_uppercase().into_bytes()
        );
    }
    let max_modify = rows.iter().map(|e| uint(e, "ModifyIndex")).max();
    assert_eq!(Some(index), max_modify, "recurse index = max ModifyIndex");

    let resp = agent.get("/v1/kv/a/?keys&separator=/").expect(200);
    resp.index();
    assert_eq!(resp.json(), json!(["a/b", "a/c/"]));
    // Consul's legacy misspelling is accepted too.
    let resp = agent.get("/v1/kv/a/?keys&seperator=/").expect(200);
    assert_eq!(resp.json(), json!(["a/b", "a/c/"]));

    let resp = agent.get("/v1/kv/?keys").expect(200);
    resp.index();
    assert_eq!(resp.json(), json!(["a/b", "a/c/d", "a/c/e", "ab", "b"]));
    let resp = agent.get("/v1/kv/?keys&separator=/").expect(200);
    assert_eq!(resp.json(), json!(["a/", "ab", "b"]));

    let resp = agent.get("/v1/kv/?recurse").expect(200);
    assert_eq!(resp.json().as_array().map(Vec::len), Some(5));

    // Empty prefix: 404 with index headers, for recurse and keys alike.
    for path in ["/v1/kv/zzz?recurse", "/v1/kv/zzz?keys"] {
        let resp = agent.get(path).expect(404);
        resp.index();
        assert!(resp.body.is_empty(), "{path}: {:?}", resp.text());
    }
}

#[test]
fn kv_cas() {
    let agent = Agent::start();
    // cas=0: create only.
    assert_eq!(
        agent.put("/v1/kv/c?cas=0", "first").expect(200).text(),
        "true"
    );
    assert_eq!(
        agent.put("/v1/kv/c?cas=0", "second").expect(200).text(),
        "false"
    );
    let entry = kv_entry(&agent, "c");
    assert_eq!(unb64(&entry["Value"]), b"first");
    let stale = uint(&entry, "ModifyIndex");

    agent.put("/v1/kv/c", "moved").expect(200);
    let current = uint(&kv_entry(&agent, "c"), "ModifyIndex");
    assert!(current > stale);

    // A stale index is refused and changes nothing.
    let resp = agent
        .put(&format!("/v1/kv/c?cas={stale}"), "lost")
        .expect(200);
    assert_eq!(resp.text(), "false");
    let entry = kv_entry(&agent, "c");
    assert_eq!(unb64(&entry["Value"]), b"moved");
    assert_eq!(uint(&entry, "ModifyIndex"), current);

    // The current index wins.
    let resp = agent
        .put(&format!("/v1/kv/c?cas={current}&flags=3"), "won")
        .expect(200);
    assert_eq!(resp.text(), "true");
    let entry = kv_entry(&agent, "c");
    assert_eq!(unb64(&entry["Value"]), b"won");
    assert_eq!(entry["Flags"], 3);
    assert!(uint(&entry, "ModifyIndex") > current);
}

#[test]
fn kv_delete_single_recurse_and_cas() {
    let agent = Agent::start();
    agent.put("/v1/kv/single", "x").expect(200);
    let resp = agent.delete("/v1/kv/single").expect(200);
    assert_eq!(resp.text(), "true");
    agent.get("/v1/kv/single").expect(404).index();
    // Deleting a missing key is not an error.
    assert_eq!(agent.delete("/v1/kv/single").expect(200).text(), "true");

    // ?recurse is a greedy prefix: "foo" also takes "foobar".
    for key in ["foo", "foo/bar", "foo/baz/qux", "foobar", "fo", "other"] {
        agent.put(&format!("/v1/kv/{key}"), "v").expect(200);
    }
    assert_eq!(
        agent.delete("/v1/kv/foo?recurse").expect(200).text(),
        "true"
    );
    let keys = agent.get("/v1/kv/?keys").expect(200).json();
    assert_eq!(keys, json!(["fo", "other"]));

    // DELETE ?cas: refused on a stale index, applied on the current one.
    agent.put("/v1/kv/dc", "v1").expect(200);
    let first = uint(&kv_entry(&agent, "dc"), "ModifyIndex");
    agent.put("/v1/kv/dc", "v2").expect(200);
    let current = uint(&kv_entry(&agent, "dc"), "ModifyIndex");
    let resp = agent.delete(&format!("/v1/kv/dc?cas={first}")).expect(200);
    assert_eq!(resp.text(), "false");
    assert_eq!(unb64(&kv_entry(&agent, "dc")["Value"]), b"v2");
    let resp = agent
        .delete(&format!("/v1/kv/dc?cas={current}"))
        .expect(200);
    assert_eq!(resp.text(), "true");
    agent.get("/v1/kv/dc").expect(404);

    // Deleting everything from the root.
    assert_eq!(agent.delete("/v1/kv/?recurse").expect(200).text(), "true");
    agent.get("/v1/kv/?recurse").expect(404).index();
}

#[test]
fn kv_missing_key_is_404_with_index_headers() {
    let agent = Agent::start();
    let resp = agent.get("/v1/kv/nope").expect(404);
    resp.index();
    assert!(resp.body.is_empty());
    assert!(resp.header("X-Consul-LastContact").is_some());
    // An empty store: recurse is 404, a root key listing is an empty 200.
    agent.get("/v1/kv/?recurse").expect(404).index();
    let resp = agent.get("/v1/kv/?keys").expect(200);
    resp.index();
    assert_eq!(resp.json(), json!([]));

    // After a delete, the 404 index is at least the delete's index.
    agent.put("/v1/kv/gone", "x").expect(200);
    let created = uint(&kv_entry(&agent, "gone"), "ModifyIndex");
    agent.delete("/v1/kv/gone").expect(200);
    let resp = agent.get("/v1/kv/gone").expect(404);
    assert!(resp.index() > created);
    let resp = agent.get("/v1/kv/gone?raw").expect(404);
    resp.index();
}

#[test]
fn kv_value_size_limit() {
    let agent = Agent::start();
    let max = 512 * 1024;
    let value: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    let resp = agent.put("/v1/kv/big", &value).expect(200);
    assert_eq!(resp.text(), "true");
    let raw = agent.get("/v1/kv/big?raw").expect(200);
    assert_eq!(raw.body.len(), max);
    assert!(raw.body == value, "512 KiB value round-trips");

    let mut too_big = value.clone();
    too_big.push(0);
    let resp = agent.put("/v1/kv/big2", &too_big).expect(413);
    assert!(
        resp.text().contains("too large"),
        "413 body: {:?}",
        resp.text()
    );
    agent.get("/v1/kv/big2").expect(404);
    // An oversized overwrite leaves the old value alone.
    agent.put("/v1/kv/big", &too_big).expect(413);
    assert_eq!(agent.get("/v1/kv/big?raw").expect(200).body.len(), max);
}

#[test]
fn kv_empty_key_is_refused() {
    let agent = Agent::start();
    let resp = agent.put("/v1/kv/", "x").expect(400);
    assert_eq!(resp.text().trim(), "Missing key name");
    let resp = agent.delete("/v1/kv/").expect(400);
    assert_eq!(resp.text().trim(), "Missing key name");
    agent.get("/v1/kv/?recurse").expect(404);
}

#[test]
fn kv_acquire_and_release_with_sessions() {
    let agent = Agent::start();
    let a = create_session(&agent, &json!({"Name": "a"}));
    let b = create_session(&agent, &json!({"Name": "b"}));

    let resp = agent
        .put(&format!("/v1/kv/lock/k?acquire={a}"), "a1")
        .expect(200);
    assert_eq!(resp.text(), "true");
    let entry = kv_entry(&agent, "lock/k");
    assert_eq!(entry["LockIndex"], 1);
    assert_eq!(entry["Session"], a.as_str());
    assert_eq!(unb64(&entry["Value"]), b"a1");

    // Re-acquire by the holder: contents updated, LockIndex unchanged.
    let resp = agent
        .put(&format!("/v1/kv/lock/k?acquire={a}&flags=9"), "a2")
        .expect(200);
    assert_eq!(resp.text(), "true");
    let entry = kv_entry(&agent, "lock/k");
    assert_eq!(entry["LockIndex"], 1);
    assert_eq!(entry["Session"], a.as_str());
    assert_eq!(unb64(&entry["Value"]), b"a2");
    assert_eq!(entry["Flags"], 9);
    let held_index = uint(&entry, "ModifyIndex");

    // Another session is refused, and nothing changes.
    let resp = agent
        .put(&format!("/v1/kv/lock/k?acquire={b}"), "b1")
        .expect(200);
    assert_eq!(resp.text(), "false");
    let resp = agent
        .put(&format!("/v1/kv/lock/k?release={b}"), "b1")
        .expect(200);
    assert_eq!(resp.text(), "false");
    let entry = kv_entry(&agent, "lock/k");
    assert_eq!(entry["Session"], a.as_str());
    assert_eq!(unb64(&entry["Value"]), b"a2");
    assert_eq!(uint(&entry, "ModifyIndex"), held_index);

    // Release by the holder: Session cleared, LockIndex kept.
    let resp = agent
        .put(&format!("/v1/kv/lock/k?release={a}"), "free")
        .expect(200);
    assert_eq!(resp.text(), "true");
    let entry = kv_entry(&agent, "lock/k");
    assert!(entry.get("Session").is_none(), "{entry}");
    assert_eq!(entry["LockIndex"], 1);

    // A voluntary release has no lock-delay: b acquires at once.
    let resp = agent
        .put(&format!("/v1/kv/lock/k?acquire={b}"), "b2")
        .expect(200);
    assert_eq!(resp.text(), "true");
    let entry = kv_entry(&agent, "lock/k");
    assert_eq!(entry["LockIndex"], 2);
    assert_eq!(entry["Session"], b.as_str());
    agent
        .put(&format!("/v1/kv/lock/k?release={b}"), "")
        .expect(200);
    assert_eq!(kv_entry(&agent, "lock/k")["LockIndex"], 2);

    // A plain PUT ignores the (advisory) lock and keeps the holder.
    agent
        .put(&format!("/v1/kv/lock/k2?acquire={a}"), "x")
        .expect(200);
    agent.put("/v1/kv/lock/k2", "overwritten").expect(200);
    let entry = kv_entry(&agent, "lock/k2");
    assert_eq!(unb64(&entry["Value"]), b"overwritten");
    assert_eq!(entry["Session"], a.as_str());
}

// ------------------------------------------------------------------ txn

fn txn(agent: &Agent, ops: &Value) -> support::Resp {
    agent.put_json("/v1/txn", ops)
}

#[test]
fn txn_commit_returns_results() {
    let agent = Agent::start();
    agent.put("/v1/kv/txn/old", "before").expect(200);
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": b64("one")}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": b64("two"), "Flags": 5}},
        {"KV": {"Verb": "get", "Key": "txn/a"}},
        {"KV": {"Verb": "delete", "Key": "txn/old"}},
    ]);
    let resp = txn(&agent, &ops).expect(200);
    let body = resp.json();
    assert!(body["Errors"].is_null(), "{body}");
    let results = body["Results"].as_array().expect("Results array");
    assert_eq!(results.len(), 3, "delete has no result row: {body}");
    let set_a = &results[0]["KV"];
    assert_kv_shape(set_a);
    assert_eq!(set_a["Key"], "txn/a");
    assert!(set_a["Value"].is_null(), "set results carry no value");
    assert_eq!(results[1]["KV"]["Flags"], 5);
    assert!(results[1]["KV"]["Value"].is_null());
    let get_a = &results[2]["KV"];
    assert_eq!(unb64(&get_a["Value"]), b"one");
    // All ops share one index.
    assert_eq!(set_a["ModifyIndex"], results[1]["KV"]["ModifyIndex"]);

    assert_eq!(unb64(&kv_entry(&agent, "txn/b")["Value"]), b"two");
    assert_eq!(kv_entry(&agent, "txn/b")["Flags"], 5);
    agent.get("/v1/kv/txn/old").expect(404);
}

#[test]
fn txn_rollback_is_409_and_writes_nothing() {
    let agent = Agent::start();
    agent.put("/v1/kv/txn/exists", "v").expect(200);
    let before = agent.get("/v1/kv/?recurse").expect(200).json();
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "txn/new", "Value": b64("x")}},
        {"KV": {"Verb": "check-not-exists", "Key": "txn/exists"}},
        {"KV": {"Verb": "delete", "Key": "txn/exists"}},
    ]);
    let resp = txn(&agent, &ops).expect(409);
    let body = resp.json();
    assert!(body["Results"].is_null(), "{body}");
    let errors = body["Errors"].as_array().expect("Errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["OpIndex"], 1);
    assert!(!string(&errors[0], "What").is_empty());

    // A stale cas also rolls back.
    let stale = json!([
        {"KV": {"Verb": "set", "Key": "txn/new2", "Value": b64("x")}},
        {"KV": {"Verb": "cas", "Key": "txn/exists", "Value": b64("y"), "Index": 1}},
    ]);
    let body = txn(&agent, &stale).expect(409).json();
    assert_eq!(body["Errors"][0]["OpIndex"], 1, "{body}");

    agent.get("/v1/kv/txn/new").expect(404);
    agent.get("/v1/kv/txn/new2").expect(404);
    assert_eq!(agent.get("/v1/kv/?recurse").expect(200).json(), before);
}

#[test]
fn txn_operation_limit() {
    let agent = Agent::start();
    let ops = |n: usize| -> Value {
        Value::Array(
            (0..n)
                .map(|i| json!({"KV": {"Verb": "set", "Key": format!("many/{i:03}"), "Value": b64("v")}}))
                .collect(),
        )
    };
    let resp = txn(&agent, &ops(65)).expect(413);
    assert!(
        resp.text().contains("too many operations"),
        "{}",
        resp.text()
    );
    agent.get("/v1/kv/many/?keys").expect(404);

    let body = txn(&agent, &ops(64)).expect(200).json();
    assert_eq!(body["Results"].as_array().map(Vec::len), Some(64));
    let keys = agent.get("/v1/kv/many/?keys").expect(200).json();
    assert_eq!(keys.as_array().map(Vec::len), Some(64));
}

#[test]
fn txn_read_only() {
    let agent = Agent::start();
    agent.put("/v1/kv/ro/a", "A").expect(200);
    agent.put("/v1/kv/ro/b", "B").expect(200);
    let a_index = uint(&kv_entry(&agent, "ro/a"), "ModifyIndex");
    let ops = json!([
        {"KV": {"Verb": "get", "Key": "ro/a"}},
        {"KV": {"Verb": "get-tree", "Key": "ro/"}},
        {"KV": {"Verb": "check-index", "Key": "ro/a", "Index": a_index}},
    ]);
    let resp = txn(&agent, &ops).expect(200);
    resp.index();
    let body = resp.json();
    assert!(body["Errors"].is_null(), "{body}");
    let results = body["Results"].as_array().expect("Results");
    let values: Vec<Vec<u8>> = results.iter().map(|r| unb64(&r["KV"]["Value"])).collect();
    assert_eq!(values[0], b"A");
    assert_eq!(values[1], b"A");
    assert_eq!(values[2], b"B");
    assert_eq!(results.len(), 4, "get, 2 × get-tree, check-index: {body}");

    // A read-only txn that fails is a 409 too.
    let ops = json!([{"KV": {"Verb": "check-index", "Key": "ro/a", "Index": a_index + 100}}]);
    let body = txn(&agent, &ops).expect(409).json();
    assert_eq!(body["Errors"][0]["OpIndex"], 0, "{body}");
    // So does a get of a missing key.
    let ops = json!([
        {"KV": {"Verb": "get", "Key": "ro/a"}},
        {"KV": {"Verb": "get", "Key": "ro/missing"}},
    ]);
    let body = txn(&agent, &ops).expect(409).json();
    assert_eq!(body["Errors"][0]["OpIndex"], 1, "{body}");
    assert!(body["Results"].is_null(), "{body}");
    // Nothing changed.
    assert_eq!(uint(&kv_entry(&agent, "ro/a"), "ModifyIndex"), a_index);
}

// ------------------------------------------------------------- blocking

/// Runs `write` on another thread after `delay`.
fn write_later(
    agent: &Agent,
    delay: Duration,
    write: impl FnOnce(&support::Client) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let client = agent.client();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        write(&client);
    })
}

#[test]
fn blocking_key_wakes_on_write() {
    let agent = Agent::start();
    agent.put("/v1/kv/watched", "v1").expect(200);
    let index = agent.get("/v1/kv/watched").expect(200).index();
    let writer = write_later(&agent, Duration::from_millis(300), |c| {
        c.put("/v1/kv/watched", "v2").expect(200);
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/watched?index={index}&wait=5s"))
        .expect(200);
    let took = started.elapsed();
    writer.join().expect("writer thread");
    assert!(
        took < Duration::from_secs(3),
        "woke {took:?} after start, well before wait=5s"
    );
    assert!(resp.index() > index);
    assert_eq!(unb64(&resp.json()[0]["Value"]), b"v2");
}

#[test]
fn blocking_key_times_out_unchanged() {
    let agent = Agent::start();
    agent.put("/v1/kv/quiet", "v").expect(200);
    let index = agent.get("/v1/kv/quiet").expect(200).index();
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/quiet?index={index}&wait=1s"))
        .expect(200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(4), "returned after {took:?}");
    assert_eq!(resp.index(), index);
}

#[test]
fn blocking_key_ignores_unrelated_writes() {
    let agent = Agent::start();
    agent.put("/v1/kv/mine", "v").expect(200);
    let index = agent.get("/v1/kv/mine").expect(200).index();
    let writer = write_later(&agent, Duration::from_millis(100), |c| {
        for i in 0..3 {
            c.put(&format!("/v1/kv/other/{i}"), "x").expect(200);
            c.put("/v1/kv/mine-not", "x").expect(200);
        }
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/mine?index={index}&wait=1s"))
        .expect(200);
    let took = started.elapsed();
    writer.join().expect("writer thread");
    assert!(
        took >= Duration::from_millis(900),
        "an unrelated write woke the key watch after {took:?}"
    );
    assert_eq!(resp.index(), index);
}

#[test]
fn blocking_prefix_wakes_on_key_under_prefix() {
    let agent = Agent::start();
    agent.put("/v1/kv/pre/one", "1").expect(200);
    let index = agent.get("/v1/kv/pre/?recurse").expect(200).index();
    let writer = write_later(&agent, Duration::from_millis(300), |c| {
        c.put("/v1/kv/unrelated", "x").expect(200);
        c.put("/v1/kv/pre/deep/two", "2").expect(200);
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/pre/?recurse&index={index}&wait=5s"))
        .expect(200);
    let took = started.elapsed();
    writer.join().expect("writer thread");
    assert!(took < Duration::from_secs(3), "woke after {took:?}");
    assert!(resp.index() > index);
    assert_eq!(resp.json().as_array().map(Vec::len), Some(2));

    // A watch on an empty prefix (404) wakes when the first key appears.
    let empty = agent.get("/v1/kv/fresh/?recurse").expect(404);
    let index = empty.index();
    let writer = write_later(&agent, Duration::from_millis(300), |c| {
        c.put("/v1/kv/fresh/k", "v").expect(200);
    });
    let started = Instant::now();
    let resp = agent
        .get(&format!("/v1/kv/fresh/?recurse&index={index}&wait=5s"))
        .expect(200);
    let took = started.elapsed();
    writer.join().expect("writer thread");
    assert!(took < Duration::from_secs(3), "woke after {took:?}");
    assert!(resp.index() > index);
    assert_eq!(resp.json()[0]["Key"], "fresh/k");
}
