#!/usr/bin/env bash
# bench/startup.sh -- time from exec to the first answered HTTP request, and
# idle RSS, of `tribune agent -dev` (release build). Median of RUNS starts.
#
#   bench/startup.sh            # RUNS=20
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/tribune"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
RUNS="${RUNS:-20}" PORT="${PORT:-18512}" BIN="$BIN" python3 - <<'PY'
import os, socket, statistics, subprocess, time
binary, port, runs = os.environ["BIN"], int(os.environ["PORT"]), int(os.environ["RUNS"])
req = b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
def serving():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(req)
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
times, rss = [], []
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "agent", "-dev", "-http-port", str(port), "-log-level", "warn"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not serving():
        if time.perf_counter() - t0 > 10:
            p.kill(); raise SystemExit("agent did not serve within 10 s")
        time.sleep(0.0005)
    times.append((time.perf_counter() - t0) * 1000)
    time.sleep(1.0)  # idle
    with open(f"/proc/{p.pid}/status") as f:
        rss.append(next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024)
    p.terminate(); p.wait()
print(f"| start to serving (ms) median / max | {statistics.median(times):.1f} / {max(times):.1f} |")
print(f"| idle RSS (MB) median / max | {statistics.median(rss):.1f} / {max(rss):.1f} |")
PY
