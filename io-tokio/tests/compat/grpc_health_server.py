#!/usr/bin/env python3
"""A real gRPC health server (grpcio's own grpc.health.v1 servicer) for
io-tokio/tests/checks_grpc.rs.

Usage: python3 grpc_health_server.py [--tls CERT_PEM KEY_PEM]

Binds 127.0.0.1 on a free port and prints `PORT <n>` on stdout. Then reads
commands on stdin, one per line, and answers `OK` after each:

    SET <service> <SERVING|NOT_SERVING|SERVICE_UNKNOWN|UNKNOWN>

(`""` as <service> means the whole server). Exits when stdin closes. Needs
the PyPI packages grpcio and grpcio-health-checking.
"""

import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        with open(sys.argv[2], "rb") as f:
            cert = f.read()
        with open(sys.argv[3], "rb") as f:
            key = f.read()
        credentials = grpc.ssl_server_credentials([(key, cert)])
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if len(words) == 3 and words[0] == "SET":
            service = "" if words[1] == '""' else words[1]
            status = health_pb2.HealthCheckResponse.ServingStatus.Value(words[2])
            servicer.set(service, status)
            print("OK", flush=True)
        elif words:
            print(f"ERR unknown command {line.strip()!r}", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
