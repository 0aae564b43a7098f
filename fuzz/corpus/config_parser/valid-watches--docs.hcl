watches = [
  {
    type = "key"
    key = "foo/bar/baz"
    handler_type = "http"
    http_handler_config {
      path = "https://localhost:8000/watch"
      method = "POST"
      header = {
        x-foo = ["bar", "baz"]
      }
      timeout = "10s"
      tls_skip_verify = false
    }
  },
  {
    type = "keyprefix"
    prefix = "foo/"
    args = ["/usr/bin/my-service-handler.sh", "-redis"]
  }
]
