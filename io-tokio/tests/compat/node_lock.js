// Takes Consul's lock at <key> with the npm `consul` client's own Lock
// recipe (0.40.0, lib/lock.js: the Go api.Lock algorithm), holds it while
// appending "start node <n>" / "stop node <n>" to <log>, releases, and
// repeats <rounds> times. Exits non-zero on any error.
//
//   node node_lock.js <port> <key> <log> <rounds>
"use strict";
const fs = require("fs");
const [port, key, log, rounds] = process.argv.slice(2);
const consul = require("consul")({ host: "127.0.0.1", port: port });

function round(n) {
  if (n >= Number(rounds)) {
    process.exit(0);
  }
  const lock = consul.lock({ key: key });
  lock.on("acquire", () => {
    fs.appendFileSync(log, `start node ${n}\n`);
    setTimeout(() => {
      fs.appendFileSync(log, `stop node ${n}\n`);
      lock.release();
    }, 200);
  });
  lock.on("error", (err) => {
    console.error("lock error:", err);
    process.exit(1);
  });
  lock.on("end", () => round(n + 1));
  lock.acquire();
}

round(0);
