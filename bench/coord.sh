#!/usr/bin/env bash
# bench/coord.sh -- coordination latencies, tribune side by side with etcd:
#
#   watch:    write -> handler process started, for `tribune watch -type=key`
#             vs `etcdctl watch KEY -- CMD`. The write is an in-process HTTP
#             request (tribune: PUT /v1/kv; etcd: POST /v3/kv/put); the
#             handler for both is `sh -c 'date +%s%N >> log'`.
#   handover: holder's session/lease ended -> standby's child started, for
#             `tribune lock -lock-delay=0s` vs `etcdctl lock`, ended by an
#             in-process request (PUT /v1/session/destroy vs POST
#             /v3/lease/revoke).
#
# Median and p90 of TRIALS each (default 20 watch, 10 handover). Release
# build of tribune; etcd from Debian (etcd-server, etcd-client).
#
#   bench/coord.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/tribune"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v etcd >/dev/null && command -v etcdctl >/dev/null || { echo "needs etcd and etcdctl" >&2; exit 1; }
WORK="$(mktemp -d /tmp/tribune-coord.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
BIN="$BIN" WORK="$WORK" WATCH_TRIALS="${WATCH_TRIALS:-20}" HANDOVER_TRIALS="${HANDOVER_TRIALS:-10}" python3 - <<'PY'
import base64, json, os, signal, statistics, subprocess, time, urllib.request

BIN, WORK = os.environ["BIN"], os.environ["WORK"]
WATCH_TRIALS, HANDOVER_TRIALS = int(os.environ["WATCH_TRIALS"]), int(os.environ["HANDOVER_TRIALS"])
T_HTTP, E_CLIENT, E_PEER = 18520, 18530, 18531
TADDR, EURL = f"127.0.0.1:{T_HTTP}", f"http://127.0.0.1:{E_CLIENT}"
procs = []

def spawn(args, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, **kw)
    procs.append(p)
    return p

def stop(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()

def http(method, url, body=None):
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()

def wait(pred, what, limit=20):
    t = time.time()
    while not pred():
        if time.time() - t > limit:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.002)

def lines(path):
    try:
        with open(path) as f:
            return [l for l in f.read().split("\n") if l]
    except FileNotFoundError:
        return []

def ready(url):
    try:
        http("GET", url); return True
    except Exception:
        return False

def etcd_put(key, value):
    b = lambda s: base64.b64encode(s.encode()).decode()
    http("POST", f"{EURL}/v3/kv/put", json.dumps({"key": b(key), "value": b(value)}).encode())

def summary(name, xs):
    xs = sorted(xs)
    return f"{statistics.median(xs):.1f} / {xs[int(len(xs) * 0.9) - 1]:.1f}"

agent = spawn([BIN, "agent", "-dev", "-http-port", str(T_HTTP), "-dns-port", "-1", "-log-level", "warn"])
etcd = spawn(["etcd", "--data-dir", f"{WORK}/etcd", "--listen-client-urls", EURL,
              "--advertise-client-urls", EURL, "--listen-peer-urls", f"http://127.0.0.1:{E_PEER}",
              "--initial-advertise-peer-urls", f"http://127.0.0.1:{E_PEER}",
              "--initial-cluster", f"default=http://127.0.0.1:{E_PEER}"])
wait(lambda: ready(f"http://{TADDR}/v1/status/leader"), "tribune")
wait(lambda: ready(f"{EURL}/health"), "etcd")
ETCDCTL = ["etcdctl", f"--endpoints={EURL}"]

def watch_latency(kind):
    log = f"{WORK}/watch-{kind}.log"
    handler = f"date +%s%N >> {log}"
    if kind == "tribune":
        w = spawn([BIN, "watch", f"-http-addr={TADDR}", "-type=key", "-key=bench/w", handler])
        wait(lambda: len(lines(log)) == 1, "initial tribune watch run")  # runs once at start
        put = lambda i: http("PUT", f"http://{TADDR}/v1/kv/bench/w", str(i).encode())
    else:
        w = spawn(ETCDCTL + ["watch", "bench/w", "--", "sh", "-c", handler])
        time.sleep(1.0)  # etcdctl has no start event; let the watch register
        put = lambda i: etcd_put("bench/w", str(i))
    base, out = len(lines(log)), []
    for i in range(WATCH_TRIALS):
        t0 = time.time_ns()
        put(i)
        wait(lambda: len(lines(log)) > base + i, f"{kind} handler {i}")
        out.append((int(lines(log)[base + i]) - t0) / 1e6)
        time.sleep(0.05)
    stop(w)
    return out

def handover(kind, trial):
    start = f"{WORK}/handover-{kind}-{trial}"
    child = f"date +%s%N > {start}; sleep 600"
    if kind == "tribune":
        lock = lambda cmd: spawn([BIN, "lock", f"-http-addr={TADDR}", "-lock-delay=0s", f"bench/l{trial}", cmd])
        holder = lock("sleep 600")
        wait(lambda: b'"Session"' in (http("GET", f"http://{TADDR}/v1/kv/bench/l{trial}/.lock") if ready(f"http://{TADDR}/v1/kv/bench/l{trial}/.lock") else b""), "holder")
        standby = lock(child)
        time.sleep(0.5)
        session = json.loads(http("GET", f"http://{TADDR}/v1/kv/bench/l{trial}/.lock"))[0]["Session"]
        t0 = time.time_ns()
        http("PUT", f"http://{TADDR}/v1/session/destroy/{session}", b"")
    else:
        lock = lambda cmd: spawn(ETCDCTL + ["lock", f"bench/l{trial}", "--", "sh", "-c", cmd])
        holder = lock("sleep 600")
        def keys():
            out = subprocess.run(ETCDCTL + ["get", f"bench/l{trial}", "--prefix", "-w", "json"],
                                 capture_output=True, text=True).stdout
            return json.loads(out).get("kvs", [])
        wait(lambda: len(keys()) == 1, "etcd holder")
        standby = lock(child)
        wait(lambda: len(keys()) == 2, "etcd standby")
        time.sleep(0.5)
        first = min(keys(), key=lambda kv: int(kv["create_revision"]))
        t0 = time.time_ns()
        http("POST", f"{EURL}/v3/lease/revoke", json.dumps({"ID": str(first["lease"])}).encode())
    wait(lambda: len(lines(start)) == 1, f"{kind} standby child")
    took = (int(lines(start)[0]) - t0) / 1e6
    stop(holder); stop(standby)
    return took

try:
    rows = []
    for kind in ("tribune", "etcd"):
        rows.append((f"watch write -> handler, {kind}", summary(kind, watch_latency(kind))))
    for kind in ("tribune", "etcd"):
        rows.append((f"lock handover, {kind}",
                     summary(kind, [handover(kind, t) for t in range(HANDOVER_TRIALS)])))
    print("| measure (ms) | median / p90 |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
finally:
    for p in procs:
        if p.poll() is None:
            stop(p)
PY
