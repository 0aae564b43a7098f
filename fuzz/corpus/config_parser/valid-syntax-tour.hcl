// Every construct the parser knows, once.
/* block
   comment */
node_name = "tour" # trailing comment
"quoted key" = "escapes: \t \" \\ \u00e9 ${node.name}"
numbers = [1, -2, 0x1F, 1.5, -0.25, 6.02e23,]
flags = { on = true, off = false }
nested { deeper { deepest = [[1, 2], [], {a = 1}] } }
service {
  name = "web"
  port = 80
  check {
    id = "web-ttl"
    ttl = "30s"
    notes = <<-EOT
      indented
        keeps relative indent
      EOT
  }
  check {
    http = "http://localhost/health"
    interval = "10s"
  }
}
labelled "block" { x = 1 }
motd = <<EOF
plain heredoc
EOF
