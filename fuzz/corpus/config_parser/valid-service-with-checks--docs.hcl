service {
  id      = "redis"
  name    = "redis"
  tags    = ["primary"]
  address = ""
  meta = {
    meta = "for my service"
  }
  tagged_addresses = {
    lan = {
      address = "192.168.0.55"
      port    = 8000
    }
    wan = {
      address = "198.18.0.23"
      port    = 80
    }
  }
  port                = 8000
  enable_tag_override = false
  checks = [
    {
      args     = ["/usr/local/bin/check_redis.py"]
      interval = "10s"
    }
  ]
  weights = {
    passing = 5
    warning = 1
  }
}
