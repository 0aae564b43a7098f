datacenter = "east-aws"
data_dir = "/opt/consul"
log_level = "INFO"
node_name = "foobar"
server = true
bootstrap_expect = 3
bind_addr = "0.0.0.0"
client_addr = "127.0.0.1"
retry_join = ["10.0.0.1", "10.0.0.2",]
ports {
  http = 8500
  dns = -1
  grpc = 8502
}
dns_config {
  allow_stale = true
  max_stale = "87600h"
  node_ttl = "10s"
  service_ttl {
    "*" = "5s"
  }
}
telemetry {
  prometheus_retention_time = "30s"
}
performance {
  raft_multiplier = 1
}
leave_on_terminate = true
reconnect_timeout = "72h"
