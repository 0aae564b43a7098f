# Check definitions from Consul's "Define health checks" page.
check {
  id       = "mem-util"
  name     = "Memory utilization"
  args     = ["/usr/local/bin/check_mem.py", "-limit", "256MB"]
  interval = "10s"
  timeout  = "1s"
}
check {
  id       = "api"
  name     = "HTTP API on port 5000"
  http     = "https://localhost:5000/health"
  tls_server_name = ""
  tls_skip_verify = false
  method   = "POST"
  header   = { Content-Type = ["application/json"] }
  body     = "{\"method\":\"health\"}"
  interval = "10s"
  timeout  = "1s"
}
check {
  id       = "ssh"
  name     = "SSH TCP on port 22"
  tcp      = "localhost:22"
  interval = "10s"
  timeout  = "1s"
}
check {
  id    = "web-app"
  name  = "Web App Status"
  notes = "Web app does a curl internally every 10 seconds"
  ttl   = "30s"
}
check {
  id              = "mem-util-grpc"
  name            = "Service health status"
  grpc            = "127.0.0.1:12345"
  grpc_use_tls    = true
  interval        = "10s"
}
