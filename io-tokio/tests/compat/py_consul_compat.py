#!/usr/bin/env python3
"""Compatibility test: drive a running tribune agent with the real py-consul client.

Usage: python3 py_consul_compat.py HTTP_PORT

Needs the PyPI package `py-consul` (import name `consul`; written against 1.8.0),
not the older, API-incompatible `python-consul` / `python-consul2` that use the
same import name. Run by io-tokio/tests/py_consul.rs against a fresh
`tribune agent -dev`, but it works against any empty dev agent.

Every test is a function decorated with @test. Each runs in turn; a failure is
caught, reported and does not stop the others. Output: one line per test
(`ok NAME` or `FAIL NAME: reason`, traceback on stderr), then the line
`N passed, M failed`. Exit status is 1 when M > 0.

Tests use their own keys/services so that they do not depend on one another.
"""

import base64
import json
import re
import sys
import threading
import time
import traceback

try:
    from importlib.metadata import PackageNotFoundError, version

    try:
        PY_CONSUL_VERSION = version("py-consul")
    except PackageNotFoundError:
        PY_CONSUL_VERSION = None
    import consul
    from consul.exceptions import ClientError, NotFound
except ImportError as exc:  # pragma: no cover - environment problem, not a test failure
    print(f"py-consul is not importable ({exc}); run: pip install py-consul", file=sys.stderr)
    sys.exit(2)

if PY_CONSUL_VERSION is None:
    print(
        "the importable `consul` module is not py-consul (python-consul?); run: pip install py-consul",
        file=sys.stderr,
    )
    sys.exit(2)

PORT = None
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def client():
    """A fresh client. One per thread: requests sessions are not thread-safe."""
    return consul.Consul(host="127.0.0.1", port=PORT)


def eventually(probe, what, timeout=5.0, interval=0.05):
    """Poll `probe()` until it returns a truthy value or `timeout` seconds pass.

    Used only for agent -> catalog/health visibility, which Consul is allowed
    to propagate asynchronously (anti-entropy). Returns the truthy value.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def parse_go_duration(text):
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"([\d.]+)(ns|us|µs|ms|s|m|h)", text)
    assert parts, f"not a Go duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def check_index(idx, what):
    assert isinstance(idx, str), f"{what}: X-Consul-Index should come back as a str, got {idx!r}"
    assert idx.isdigit(), f"{what}: X-Consul-Index not an unsigned integer: {idx!r}"
    assert int(idx) > 0, f"{what}: X-Consul-Index must never be 0, got {idx!r}"
    return int(idx)


def get_entry(c, key):
    idx, entry = c.kv.get(key)
    check_index(idx, f"GET {key}")
    return entry


# --------------------------------------------------------------------------
# KV


@test
def test_kv_put_get_value_flags_indexes():
    c = client()
    key = "compat/kv/basic"
    value = b"hello \x00\xff\xfe binary"
    assert c.kv.put(key, value) is True, "kv.put of a new key should return True"
    idx, e = c.kv.get(key)
    idx_n = check_index(idx, "kv.get")
    assert e is not None, "kv.get of an existing key returned None"
    assert e["Key"] == key, f"Key mismatch: {e['Key']!r}"
    assert e["Value"] == value, f"Value bytes mismatch: {e['Value']!r} != {value!r}"
    assert e["Flags"] == 0, f"default Flags should be 0, got {e['Flags']!r}"
    for field in ("CreateIndex", "ModifyIndex", "LockIndex"):
        assert isinstance(e.get(field), int), f"{field} should be an int, got {e.get(field)!r}"
    assert e["LockIndex"] == 0, f"LockIndex of a never-locked key should be 0, got {e['LockIndex']}"
    assert e["CreateIndex"] > 0, "CreateIndex should be > 0"
    assert e["ModifyIndex"] == e["CreateIndex"], "a fresh key should have ModifyIndex == CreateIndex"
    assert not e.get("Session"), f"unlocked key should carry no Session, got {e.get('Session')!r}"
    assert idx_n >= e["ModifyIndex"], f"X-Consul-Index {idx_n} < ModifyIndex {e['ModifyIndex']}"

    # Overwrite with a uint64 flag value above 2**53 (the `consul lock` magic flag).
    flags = 0x2DDCCBC058A50C18
    assert c.kv.put(key, "second", flags=flags) is True, "overwrite should return True"
    idx2, e2 = c.kv.get(key)
    assert e2["Value"] == b"second", f"overwritten value mismatch: {e2['Value']!r}"
    assert e2["Flags"] == flags, f"Flags should round-trip as uint64 {flags}, got {e2['Flags']!r}"
    assert e2["CreateIndex"] == e["CreateIndex"], "CreateIndex must not change on overwrite"
    assert e2["ModifyIndex"] > e["ModifyIndex"], "ModifyIndex must grow on overwrite"
    assert check_index(idx2, "kv.get after overwrite") > idx_n, "X-Consul-Index must grow after a write"

    # Empty body: Consul stores an empty value and returns Value null (or "").
    assert c.kv.put(key, "") is True, "put with an empty value should return True"
    e3 = get_entry(c, key)
    assert e3["Value"] in (None, b""), f"empty value should read back as null/empty, got {e3['Value']!r}"
    assert e3["Flags"] == 0, f"a put without ?flags resets Flags to 0, got {e3['Flags']!r}"


@test
def test_kv_get_missing_key():
    c = client()
    idx, e = c.kv.get("compat/kv/no-such-key")
    # py-consul raises ConsulException("Missing index header") if a 404 lacks X-Consul-Index.
    check_index(idx, "kv.get of a missing key (404 must still carry X-Consul-Index)")
    assert e is None, f"missing key should give None, got {e!r}"
    idx, es = c.kv.get("compat/kv/no-such-prefix/", recurse=True)
    check_index(idx, "recursive kv.get of an empty prefix")
    assert es is None, f"recursive get of an empty prefix should give None (404), got {es!r}"


@test
def test_kv_recurse_keys_and_delete():
    c = client()
    base = "compat/tree/"
    items = {
        base + "a": b"1",
        base + "b/c": b"2",
        base + "b/d": b"3",
        base + "e": b"4",
    }
    outside = "compat/treeX"  # shares the string prefix "compat/tree" but not "compat/tree/"
    for k, v in items.items():
        assert c.kv.put(k, v) is True, f"put {k} failed"
    assert c.kv.put(outside, b"outside") is True, "put outside key failed"

    idx, entries = c.kv.get(base, recurse=True)
    check_index(idx, "recursive get")
    assert isinstance(entries, list), f"recursive get should return a list, got {entries!r}"
    got_keys = [e["Key"] for e in entries]
    assert got_keys == sorted(items), f"recursive get keys {got_keys} != {sorted(items)}"
    got = {e["Key"]: e["Value"] for e in entries}
    assert got == items, f"recursive get values {got} != {items}"
    assert check_index(idx, "recursive get") >= max(e["ModifyIndex"] for e in entries), (
        "recursive X-Consul-Index should be >= the max ModifyIndex under the prefix"
    )

    idx, keys = c.kv.get(base, keys=True, separator="/")
    check_index(idx, "keys listing")
    want = [base + "a", base + "b/", base + "e"]
    assert keys == want, f"keys with separator '/' gave {keys}, want {want}"

    idx, keys = c.kv.get(base, keys=True)
    assert keys == sorted(items), f"keys without separator gave {keys}, want {sorted(items)}"

    # single delete
    assert c.kv.delete(base + "a") is True, "delete of an existing key should return True"
    assert get_entry(c, base + "a") is None, "deleted key still readable"
    assert c.kv.delete(base + "never-existed") is True, "delete of a missing key returns True in Consul"

    # recursive delete
    assert c.kv.delete(base, recurse=True) is True, "recursive delete should return True"
    idx, entries = c.kv.get(base, recurse=True)
    assert entries is None, f"keys left after recursive delete: {entries!r}"
    e = get_entry(c, outside)
    assert e is not None and e["Value"] == b"outside", "recursive delete of 'compat/tree/' removed 'compat/treeX'"


@test
def test_kv_cas():
    c = client()
    key = "compat/cas/key"
    assert c.kv.put(key, b"first", cas=0) is True, "cas=0 on a missing key should create it"
    assert c.kv.put(key, b"again", cas=0) is False, "cas=0 on an existing key must fail"
    e = get_entry(c, key)
    assert e["Value"] == b"first", f"failed cas=0 modified the value: {e['Value']!r}"

    mi = e["ModifyIndex"]
    assert c.kv.put(key, b"second", cas=mi) is True, f"cas=<current ModifyIndex {mi}> should succeed"
    e2 = get_entry(c, key)
    assert e2["Value"] == b"second", f"cas write not applied: {e2['Value']!r}"
    assert e2["ModifyIndex"] > mi, "ModifyIndex must grow after a cas write"

    assert c.kv.put(key, b"third", cas=mi) is False, "cas with a stale index must fail"
    assert get_entry(c, key)["Value"] == b"second", "failed cas with a stale index modified the value"

    # delete-cas: stale index refused, current index accepted
    assert c.kv.delete(key, cas=mi) is False, "delete with a stale cas index must return False"
    assert get_entry(c, key) is not None, "failed delete-cas removed the key"
    assert c.kv.delete(key, cas=e2["ModifyIndex"]) is True, "delete with the current cas index should succeed"
    assert get_entry(c, key) is None, "key still present after successful delete-cas"


@test
def test_kv_blocking_get_wakes_on_write():
    c = client()
    key = "compat/block/key"
    assert c.kv.put(key, b"before") is True
    idx, e = c.kv.get(key)
    idx_n = check_index(idx, "initial get")

    errors = []

    def writer():
        try:
            time.sleep(0.5)
            if client().kv.put(key, b"after") is not True:
                errors.append("background put returned non-True")
        except Exception as exc:  # reported by the main thread
            errors.append(repr(exc))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    start = time.monotonic()
    idx2, e2 = c.kv.get(key, index=idx, wait="2s")
    elapsed = time.monotonic() - start
    t.join(timeout=10)
    assert not errors, f"background writer failed: {errors}"
    assert e2 is not None, "blocking get returned None"
    assert e2["Value"] == b"after", f"blocking get should return the new value, got {e2['Value']!r}"
    assert elapsed < 2.0, f"blocking get took {elapsed:.2f}s, should return on the write, before wait=2s"
    assert elapsed >= 0.3, f"blocking get returned after {elapsed:.2f}s, before the write (did not block)"
    assert check_index(idx2, "blocking get") > idx_n, "index must grow after the write"
    assert e2["ModifyIndex"] > e["ModifyIndex"], "ModifyIndex must grow after the write"


@test
def test_kv_blocking_get_times_out():
    c = client()
    key = "compat/blockwait/key"
    assert c.kv.put(key, b"still") is True
    idx, _ = c.kv.get(key)
    idx_n = check_index(idx, "initial get")
    start = time.monotonic()
    idx2, e2 = c.kv.get(key, index=idx, wait="1s")
    elapsed = time.monotonic() - start
    assert elapsed >= 0.9, f"blocking get with no write returned after {elapsed:.2f}s, before wait=1s"
    assert elapsed < 3.0, f"blocking get with wait=1s took {elapsed:.2f}s (wait + wait/16 jitter expected)"
    assert e2 is not None and e2["Value"] == b"still", f"value changed unexpectedly: {e2!r}"
    assert check_index(idx2, "timed-out blocking get") == idx_n, (
        f"index should be unchanged after a timeout: {idx2} != {idx}"
    )


# --------------------------------------------------------------------------
# Sessions


@test
def test_session_lifecycle():
    c = client()
    sid = c.session.create(name="compat-session", ttl=10, behavior="release", lock_delay=0)
    assert isinstance(sid, str) and len(sid) == 36, f"session.create should return a UUID string, got {sid!r}"

    idx, info = c.session.info(sid)
    check_index(idx, "session.info")
    assert info is not None, "session.info of a live session returned None"
    assert info["ID"] == sid, f"info ID {info['ID']!r} != {sid!r}"
    assert info["Name"] == "compat-session", f"Name {info.get('Name')!r}"
    assert info["Behavior"] == "release", f"Behavior {info.get('Behavior')!r}"
    assert info["TTL"] == "10s", f"TTL should be the string '10s', got {info.get('TTL')!r}"
    assert info["LockDelay"] == 0, f"lock_delay=0 ('0s') should give LockDelay 0 ns, got {info.get('LockDelay')!r}"
    assert isinstance(info.get("CreateIndex"), int) and info["CreateIndex"] > 0, "CreateIndex missing"
    node = info.get("Node")
    assert isinstance(node, str) and node, f"session Node should default to the agent node, got {node!r}"

    idx, sessions = c.session.list()
    check_index(idx, "session.list")
    assert sid in [s["ID"] for s in sessions], "session.list does not include the new session"

    idx, on_node = c.session.node(node)
    check_index(idx, "session.node")
    assert sid in [s["ID"] for s in on_node], f"session.node({node!r}) does not include the new session"
    assert all(s["Node"] == node for s in on_node), "session.node returned sessions of another node"

    idx, nodes = c.catalog.nodes()
    assert node in [n["Node"] for n in nodes], f"session node {node!r} not in catalog.nodes()"

    renewed = c.session.renew(sid)
    assert isinstance(renewed, dict), f"session.renew should return the session object, got {renewed!r}"
    assert renewed["ID"] == sid, f"renew returned another session: {renewed.get('ID')!r}"
    assert parse_go_duration(renewed["TTL"]) >= 10, f"renewed TTL below the requested 10s: {renewed['TTL']!r}"

    assert c.session.destroy(sid) is True, "session.destroy should return True"
    idx, info = c.session.info(sid)
    check_index(idx, "session.info after destroy")
    assert info is None, f"session.info of a destroyed session should be None, got {info!r}"
    idx, sessions = c.session.list()
    assert sid not in [s["ID"] for s in sessions], "destroyed session still in session.list"
    idx, on_node = c.session.node(node)
    assert sid not in [s["ID"] for s in on_node], "destroyed session still in session.node"

    try:
        c.session.renew(sid)
    except NotFound:
        pass
    else:
        raise AssertionError("renew of a destroyed session should raise consul.NotFound (HTTP 404)")


@test
def test_session_defaults_and_delete_behavior():
    c = client()
    sid = c.session.create(name="compat-delete", ttl=10, behavior="delete")  # lock_delay default -> not sent
    try:
        _, info = c.session.info(sid)
        assert info is not None, "session.info returned None"
        assert info["Behavior"] == "delete", f"Behavior {info.get('Behavior')!r}"
        assert info["LockDelay"] == 15_000_000_000, (
            f"default LockDelay should be 15s = 15000000000 ns, got {info.get('LockDelay')!r}"
        )
    finally:
        c.session.destroy(sid)

    bare = c.session.create()  # empty request body
    try:
        _, info = c.session.info(bare)
        assert info is not None and info["ID"] == bare, "session created with empty body not readable"
        assert info["Behavior"] == "release", f"default Behavior should be 'release', got {info.get('Behavior')!r}"
    finally:
        c.session.destroy(bare)


# --------------------------------------------------------------------------
# Locks


@test
def test_lock_acquire_release_lockindex():
    c = client()
    key = "compat/lock/key"
    s1 = c.session.create(name="compat-lock-1", ttl=10, behavior="release", lock_delay=0)
    s2 = c.session.create(name="compat-lock-2", ttl=10, behavior="release", lock_delay=0)
    try:
        assert c.kv.put(key, b"v1", acquire=s1) is True, "first acquire should return True"
        e = get_entry(c, key)
        assert e["Session"] == s1, f"Session should be the holder {s1}, got {e.get('Session')!r}"
        assert e["LockIndex"] == 1, f"LockIndex after first acquire should be 1, got {e['LockIndex']}"
        assert e["Value"] == b"v1", f"acquire should write the value, got {e['Value']!r}"

        assert c.kv.put(key, b"v2", acquire=s1) is True, "re-acquire by the holder should return True"
        e = get_entry(c, key)
        assert e["LockIndex"] == 1, f"re-acquire by the holder must not bump LockIndex, got {e['LockIndex']}"
        assert e["Value"] == b"v2", f"re-acquire by the holder should update the value, got {e['Value']!r}"
        assert e["Session"] == s1, "holder changed on re-acquire"

        assert c.kv.put(key, b"stolen", acquire=s2) is False, "acquire by a second session must return False"
        e = get_entry(c, key)
        assert e["Session"] == s1, f"failed acquire changed the holder to {e.get('Session')!r}"
        assert e["Value"] == b"v2", f"failed acquire changed the value to {e['Value']!r}"
        assert e["LockIndex"] == 1, "failed acquire changed LockIndex"

        assert c.kv.put(key, b"x", release=s2) is False, "release by a non-holder must return False"
        assert get_entry(c, key)["Session"] == s1, "release by a non-holder unlocked the key"

        assert c.kv.put(key, b"v3", release=s1) is True, "release by the holder should return True"
        e = get_entry(c, key)
        assert not e.get("Session"), f"released key should have no Session, got {e.get('Session')!r}"
        assert e["LockIndex"] == 1, f"release must not change LockIndex, got {e['LockIndex']}"
        assert e["Value"] == b"v3", f"release should write the value, got {e['Value']!r}"

        assert c.kv.put(key, b"v4", acquire=s2) is True, "second session should acquire the released lock"
        e = get_entry(c, key)
        assert e["Session"] == s2, f"holder should now be s2, got {e.get('Session')!r}"
        assert e["LockIndex"] == 2, f"LockIndex should be 2 after the second acquisition, got {e['LockIndex']}"
    finally:
        c.session.destroy(s1)
        c.session.destroy(s2)


@test
def test_lock_delete_behavior_removes_key():
    c = client()
    key = "compat/lock/ephemeral"
    sid = c.session.create(name="compat-ephemeral", ttl=10, behavior="delete", lock_delay=0)
    assert c.kv.put(key, b"ephemeral", acquire=sid) is True, "acquire should return True"
    assert get_entry(c, key) is not None, "acquired key not readable"
    assert c.session.destroy(sid) is True, "destroy should return True"
    assert get_entry(c, key) is None, "behavior=delete: key held by a destroyed session should be deleted"


@test
def test_lock_release_behavior_keeps_key():
    c = client()
    key = "compat/lock/kept"
    sid = c.session.create(name="compat-kept", ttl=10, behavior="release", lock_delay=0)
    assert c.kv.put(key, b"kept", acquire=sid) is True, "acquire should return True"
    assert c.session.destroy(sid) is True, "destroy should return True"
    e = get_entry(c, key)
    assert e is not None, "behavior=release: key must survive the session"
    assert not e.get("Session"), f"behavior=release: key should lose its Session, got {e.get('Session')!r}"
    assert e["Value"] == b"kept", f"value changed by release-on-destroy: {e['Value']!r}"
    assert e["LockIndex"] == 1, f"LockIndex should stay 1 after invalidation, got {e['LockIndex']}"


@test
def test_lock_delay_after_invalidation():
    c = client()
    key = "compat/lock/delayed"
    s1 = c.session.create(name="compat-delay-1", ttl=10)  # default lock-delay 15s
    s2 = c.session.create(name="compat-delay-2", ttl=10, lock_delay=0)
    try:
        assert c.kv.put(key, b"held", acquire=s1) is True, "acquire should return True"
        assert c.session.destroy(s1) is True, "destroy should return True"
        assert c.kv.put(key, b"early", acquire=s2) is False, (
            "acquire within the 15s lock-delay of the invalidated holder must return False"
        )
        e = get_entry(c, key)
        assert not e.get("Session"), f"key should be unlocked, got Session {e.get('Session')!r}"
        assert e["Value"] == b"held", f"refused acquire wrote the value: {e['Value']!r}"
    finally:
        c.session.destroy(s2)


# --------------------------------------------------------------------------
# Agent, health, catalog


def _register_web(c):
    ok = c.agent.service.register("web", service_id="web1", port=8080, tags=["v1"], check=consul.Check.ttl("10s"))
    assert ok is True, f"agent.service.register should return True, got {ok!r}"


def _health_ids(c, passing):
    _, entries = c.health.service("web", passing=passing)
    return [en["Service"]["ID"] for en in entries]


@test
def test_agent_service_and_ttl_check():
    c = client()
    _register_web(c)
    try:
        services = c.agent.services()
        assert "web1" in services, f"agent.services() lacks web1: {sorted(services)}"
        svc = services["web1"]
        assert svc["ID"] == "web1", f"ID {svc.get('ID')!r}"
        assert svc["Service"] == "web", f"Service {svc.get('Service')!r}"
        assert svc["Port"] == 8080, f"Port {svc.get('Port')!r}"
        assert svc["Tags"] == ["v1"], f"Tags {svc.get('Tags')!r}"

        checks = c.agent.checks()
        assert "service:web1" in checks, f"agent.checks() lacks the generated id 'service:web1': {sorted(checks)}"
        chk = checks["service:web1"]
        assert chk["CheckID"] == "service:web1", f"CheckID {chk.get('CheckID')!r}"
        assert chk["ServiceID"] == "web1", f"ServiceID {chk.get('ServiceID')!r}"
        assert chk["ServiceName"] == "web", f"ServiceName {chk.get('ServiceName')!r}"
        assert chk["Status"] == "critical", f"a new TTL check starts critical, got {chk.get('Status')!r}"

        assert c.agent.check.ttl_pass("service:web1") is True, "ttl_pass should return True"
        assert c.agent.checks()["service:web1"]["Status"] == "passing", "status not passing after ttl_pass"
        assert c.agent.check.ttl_warn("service:web1", notes="careful") is True, "ttl_warn should return True"
        chk = c.agent.checks()["service:web1"]
        assert chk["Status"] == "warning", f"status not warning after ttl_warn: {chk.get('Status')!r}"
        assert chk["Output"] == "careful", f"ttl note should become Output, got {chk.get('Output')!r}"
        assert c.agent.check.ttl_fail("service:web1") is True, "ttl_fail should return True"
        assert c.agent.checks()["service:web1"]["Status"] == "critical", "status not critical after ttl_fail"
    finally:
        c.agent.service.deregister("web1")


@test
def test_health_service_passing_filter():
    c = client()
    _register_web(c)
    try:
        assert "web1" not in _health_ids(c, passing=True), "critical instance listed by health.service(passing=True)"
        eventually(lambda: "web1" in _health_ids(c, passing=False), "web1 in health.service('web') (unfiltered)")

        assert c.agent.check.ttl_pass("service:web1") is True, "ttl_pass should return True"
        eventually(lambda: "web1" in _health_ids(c, passing=True), "web1 passing in health.service")
        idx, entries = c.health.service("web", passing=True)
        check_index(idx, "health.service")
        entry = [en for en in entries if en["Service"]["ID"] == "web1"][0]
        assert entry["Service"]["Service"] == "web", f"Service.Service {entry['Service'].get('Service')!r}"
        assert entry["Service"]["Port"] == 8080, f"Service.Port {entry['Service'].get('Port')!r}"
        assert entry["Service"]["Tags"] == ["v1"], f"Service.Tags {entry['Service'].get('Tags')!r}"
        assert entry["Node"]["Node"], "health entry lacks Node.Node"
        by_id = {ch["CheckID"]: ch for ch in entry["Checks"]}
        assert "service:web1" in by_id, f"health entry Checks lack service:web1: {sorted(by_id)}"
        assert by_id["service:web1"]["Status"] == "passing", "service check not passing in health entry"
        assert all(ch["Status"] == "passing" for ch in entry["Checks"]), "passing=True kept a non-passing check"

        assert c.agent.check.ttl_fail("service:web1") is True, "ttl_fail should return True"
        eventually(lambda: "web1" not in _health_ids(c, passing=True), "web1 dropped from passing health")
        _, entries = c.health.service("web")
        entry = [en for en in entries if en["Service"]["ID"] == "web1"]
        assert entry, "failing instance should still be listed without passing=True"
        statuses = {ch["CheckID"]: ch["Status"] for ch in entry[0]["Checks"]}
        assert statuses.get("service:web1") == "critical", f"service check should be critical: {statuses}"
    finally:
        c.agent.service.deregister("web1")


@test
def test_catalog_views_and_deregister():
    c = client()
    _register_web(c)
    deregistered = False
    try:
        def catalog_has_web():
            _, svcs = c.catalog.services()
            return "web" in svcs and svcs

        svcs = eventually(catalog_has_web, "'web' in catalog.services()")
        assert "v1" in svcs["web"], f"catalog.services()['web'] should list tag v1, got {svcs['web']!r}"

        idx, nodes = c.catalog.nodes()
        check_index(idx, "catalog.nodes")
        assert nodes, "catalog.nodes() is empty"
        node_names = [n["Node"] for n in nodes]
        assert all(n.get("Address") for n in nodes), f"catalog nodes lack Address: {nodes!r}"

        idx, instances = c.catalog.service("web")
        check_index(idx, "catalog.service")
        inst = [i for i in instances if i["ServiceID"] == "web1"]
        assert inst, f"catalog.service('web') lacks web1: {instances!r}"
        inst = inst[0]
        assert inst["ServiceName"] == "web", f"ServiceName {inst.get('ServiceName')!r}"
        assert inst["ServicePort"] == 8080, f"ServicePort {inst.get('ServicePort')!r}"
        assert inst["ServiceTags"] == ["v1"], f"ServiceTags {inst.get('ServiceTags')!r}"
        assert inst["Node"] in node_names, f"instance Node {inst.get('Node')!r} not in catalog.nodes()"
        assert inst.get("Address"), "catalog service entry lacks the node Address"

        assert c.agent.service.deregister("web1") is True, "agent.service.deregister should return True"
        deregistered = True
        assert "web1" not in c.agent.services(), "web1 still in agent.services() after deregister"
        assert "service:web1" not in c.agent.checks(), "service check survived deregister"
        eventually(lambda: not [i for i in c.catalog.service("web")[1] if i["ServiceID"] == "web1"],
                   "web1 gone from catalog.service('web')")
        assert "web1" not in _health_ids(c, passing=False), "web1 still in health.service after deregister"
    finally:
        if not deregistered:
            c.agent.service.deregister("web1")


# --------------------------------------------------------------------------
# Status, transactions


@test
def test_status_leader():
    leader = client().status.leader()
    assert isinstance(leader, str), f"status.leader() should be a JSON string, got {leader!r}"
    assert leader, "status.leader() is empty: a -dev agent is its own leader"
    assert ":" in leader, f"leader should look like host:port, got {leader!r}"


@test
def test_txn_commit_and_rollback():
    c = client()
    k1, k2, k3, k4 = (f"compat/txn/k{i}" for i in range(1, 5))
    ok = c.txn.put([
        {"KV": {"Verb": "set", "Key": k1, "Value": b64(b"one")}},
        {"KV": {"Verb": "set", "Key": k2, "Value": b64(b"two"), "Flags": 7}},
    ])
    assert isinstance(ok, dict), f"txn.put should return the decoded response object, got {ok!r}"
    assert not ok.get("Errors"), f"successful txn reported Errors: {ok.get('Errors')!r}"
    results = ok.get("Results")
    assert isinstance(results, list) and len(results) == 2, f"txn should give 2 Results, got {results!r}"
    assert [r["KV"]["Key"] for r in results] == [k1, k2], f"Results keys {results!r}"
    assert results[0]["KV"]["Value"] is None, "a set op's result should not echo the Value (null)"
    e1 = get_entry(c, k1)
    e2 = get_entry(c, k2)
    assert e1 and e1["Value"] == b"one", f"txn set of {k1} not applied: {e1!r}"
    assert e2 and e2["Value"] == b"two" and e2["Flags"] == 7, f"txn set of {k2} not applied: {e2!r}"

    stale = e1["ModifyIndex"] + 1000
    try:
        c.txn.put([
            {"KV": {"Verb": "set", "Key": k3, "Value": b64(b"three")}},
            {"KV": {"Verb": "set", "Key": k4, "Value": b64(b"four")}},
            {"KV": {"Verb": "cas", "Key": k1, "Value": b64(b"changed"), "Index": stale}},
        ])
    except ClientError as exc:
        # py-consul's CB._status turns any 4xx other than 400/401/403/404 into
        # ClientError("<code> <body>"); Consul's 409 body is the JSON TxnResponse.
        msg = str(exc)
        assert msg.startswith("409 "), f"rolled-back txn should be HTTP 409, got {msg!r}"
        try:
            body = json.loads(msg[4:])
        except ValueError as jexc:
            raise AssertionError(f"409 body is not JSON: {msg!r}") from jexc
        errors = body.get("Errors")
        assert isinstance(errors, list) and errors, f"409 body should list Errors: {body!r}"
        assert errors[0].get("OpIndex") == 2, f"failing op should be OpIndex 2, got {errors!r}"
        assert errors[0].get("What"), f"txn error should explain What failed: {errors!r}"
    else:
        raise AssertionError("txn with a failing cas op should raise consul.exceptions.ClientError (HTTP 409)")

    assert get_entry(c, k3) is None, "rolled-back txn applied its first set"
    assert get_entry(c, k4) is None, "rolled-back txn applied its second set"
    assert get_entry(c, k1)["Value"] == b"one", "rolled-back txn changed the cas key"


# --------------------------------------------------------------------------


def main():
    global PORT
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        print(f"usage: {sys.argv[0]} HTTP_PORT", file=sys.stderr)
        return 2
    PORT = int(sys.argv[1])
    print(f"# py-consul {PY_CONSUL_VERSION} against 127.0.0.1:{PORT}", flush=True)
    passed = failed = 0
    for fn in TESTS:
        name = fn.__name__[len("test_"):]
        try:
            fn()
        except Exception as exc:  # AssertionError or a client/transport error
            failed += 1
            reason = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            reason = " ".join(reason.split()) or type(exc).__name__
            print(f"FAIL {name}: {reason}", flush=True)
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
        else:
            passed += 1
            print(f"ok {name}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
