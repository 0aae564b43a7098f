#!/usr/bin/env bash
# bench/checks.sh -- CPU and RSS of `tribune agent -dev` (release build)
# running N TCP checks at a 10 s interval against one local listener.
#
#   bench/checks.sh              # N=1000 DURATION=60
#
# The checks come from a config dir (as an operator would define them); the
# listener is a Python socket server started here. After a warm-up of one
# interval (all first runs are staggered across it), the agent's CPU time
# (utime+stime from /proc/<pid>/stat) is sampled over DURATION seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/tribune"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
N="${N:-1000}" DURATION="${DURATION:-60}" PORT="${PORT:-18613}" BIN="$BIN" python3 - <<'PY'
import json, os, socket, subprocess, tempfile, threading, time, urllib.request
binary, n, duration, port = os.environ["BIN"], int(os.environ["N"]), int(os.environ["DURATION"]), int(os.environ["PORT"])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0)); listener.listen(1024)
target = listener.getsockname()[1]
accepted = [0]
def serve():
    while True:
        conn, _ = listener.accept(); accepted[0] += 1; conn.close()
threading.Thread(target=serve, daemon=True).start()
conf = tempfile.mkdtemp(prefix="tribune-bench-checks-")
checks = [{"id": f"tcp-{i}", "name": f"tcp {i}", "tcp": f"127.0.0.1:{target}", "interval": "10s"} for i in range(n)]
with open(os.path.join(conf, "checks.json"), "w") as f:
    json.dump({"service": {"name": "bench", "port": target}, "checks": checks}, f)
p = subprocess.Popen([binary, "agent", "-dev", "-http-port", str(port), "-dns-port=-1",
                      "-log-level", "warn", "-config-dir", conf],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def passing():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health/state/passing") as r:
        return sum(1 for c in json.load(r) if c["CheckID"].startswith("tcp-"))
def cpu_seconds():
    with open(f"/proc/{p.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
def rss_mb():
    with open(f"/proc/{p.pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024
try:
    deadline = time.time() + 30
    while True:
        try:
            if passing() == n: break
        except OSError:
            pass
        if time.time() > deadline: raise SystemExit("checks did not all pass within 30 s")
        time.sleep(0.5)
    cpu0, t0, runs0 = cpu_seconds(), time.time(), accepted[0]
    time.sleep(duration)
    cpu1, t1, runs1 = cpu_seconds(), time.time(), accepted[0]
    elapsed = t1 - t0
    print(f"| checks | {n} TCP, 10 s interval |")
    print(f"| probe runs per second | {(runs1 - runs0) / elapsed:.1f} |")
    print(f"| agent CPU (% of one core) | {100 * (cpu1 - cpu0) / elapsed:.2f} |")
    print(f"| agent CPU per probe run (µs) | {1e6 * (cpu1 - cpu0) / max(1, runs1 - runs0):.0f} |")
    print(f"| RSS (MB) | {rss_mb():.1f} |")
finally:
    p.terminate(); p.wait()
PY
