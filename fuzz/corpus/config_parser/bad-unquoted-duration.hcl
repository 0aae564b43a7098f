check {
  name = "t"
  ttl = 30s
}
