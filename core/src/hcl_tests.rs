use super::*;
use proptest::prelude::*;
use serde_json::json;

fn ok(text: &str) -> Value {
    parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// (line, column, a piece of the message)
fn err(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Ok(v) => panic!("{text:?} should fail, parsed as {v}"),
        Err(e) => (e.pos.line, e.pos.column, e.message),
    }
}

#[test]
fn constructs_become_the_same_json() {
    let table: Vec<(&str, Value)> = vec![
        ("", json!({})),
        ("# only a comment\n", json!({})),
        (r#"datacenter = "east-aws""#, json!({"datacenter": "east-aws"})),
        (r#""quoted key" = "v""#, json!({"quoted key": "v"})),
        (
            r#"s = "tab\there \"q\" back\\slash \u00e9 \U0001F600 \x41 nl\n""#,
            json!({"s": "tab\there \"q\" back\\slash é 😀 A nl\n"}),
        ),
        (r#"s = "${node.name} said \"hi\"""#, json!({"s": "${node.name} said \"hi\""})),
        (r#"s = "${lookup("a", "b")}""#, json!({"s": "${lookup(\"a\", \"b\")}"})),
        ("n = 8500", json!({"n": 8500})),
        ("n = -1", json!({"n": -1})),
        ("n = 0x1F", json!({"n": 31})),
        ("n = 0755\nm = -010\nz = 0", json!({"n": 493, "m": -8, "z": 0})),
        ("f = 01.5", json!({"f": 1.5})),
        ("f = 1.5", json!({"f": 1.5})),
        ("f = -0.25", json!({"f": -0.25})),
        ("f = 1e3", json!({"f": 1000.0})),
        ("t = true\nf = false", json!({"t": true, "f": false})),
        ("l = []", json!({"l": []})),
        (r#"l = ["a", "b",]"#, json!({"l": ["a", "b"]})),
        ("l = [\n  1, # one\n  [2, 3],\n]", json!({"l": [1, [2, 3]]})),
        ("o = { a = 1, b = \"x\" }", json!({"o": {"a": 1, "b": "x"}})),
        ("o { a = 1 }", json!({"o": {"a": 1}})),
        ("o = {}", json!({"o": {}})),
        (
            "ports {\n  http = 8501\n  dns = -1\n}\ndns_config {\n  allow_stale = true\n  max_stale = \"87600h\"\n  service_ttl { \"*\" = \"5s\" }\n}",
            json!({
                "ports": {"http": 8501, "dns": -1},
                "dns_config": {"allow_stale": true, "max_stale": "87600h", "service_ttl": {"*": "5s"}}
            }),
        ),
        ("a = 1 b = 2, c = 3", json!({"a": 1, "b": 2, "c": 3})),
        ("a = 1\na = 2", json!({"a": 2})),
        (
            "// line\n/* block\n comment */ a = /* inline */ 1 # end",
            json!({"a": 1}),
        ),
        ("h = <<EOF\nline 1\n  line 2\nEOF\n", json!({"h": "line 1\n  line 2\n"})),
        ("h = <<EOF\r\nwin\r\nEOF", json!({"h": "win\n"})),
        ("h = <<EOF\nEOF\n", json!({"h": ""})),
        (
            "h = <<-EOT\n    indented\n      more\n    EOT\n",
            json!({"h": "indented\n  more\n"}),
        ),
        (
            "h = <<-EOT\n  a\n b\n  EOT\n",
            json!({"h": "  a\n b\n"}),
        ),
        (
            "service \"web\" { port = 80 }",
            json!({"service": {"web": {"port": 80}}}),
        ),
        (
            "{\"ports\": {\"http\": 1}, \"f\": 2.5}",
            json!({"ports": {"http": 1}, "f": 2.5}),
        ),
        (
            "retry_join = [\"10.0.0.1\", \"10.0.0.2\"]",
            json!({"retry_join": ["10.0.0.1", "10.0.0.2"]}),
        ),
        ("ports = [{ http = 1 }]", json!({"ports": {"http": 1}})),
    ];
    for (text, want) in table {
        assert_eq!(ok(text), want, "{text}");
    }
}

#[test]
fn list_keys_and_repeated_blocks_follow_consul() {
    let table: Vec<(&str, Value)> = vec![
        // One `services` block is still a list, as in Consul.
        ("services { name = \"a\" }", json!({"services": [{"name": "a"}]})),
        (
            "services { name = \"a\" }\nservices { name = \"b\" }",
            json!({"services": [{"name": "a"}, {"name": "b"}]}),
        ),
        ("service { name = \"a\" }", json!({"service": {"name": "a"}})),
        (
            "service { name = \"a\" }\nservice { name = \"b\" }",
            json!({"services": [{"name": "a"}, {"name": "b"}]}),
        ),
        (
            "services = [{ name = \"x\" }]\nservice { name = \"a\" }\nservice { name = \"b\" }",
            json!({"services": [{"name": "x"}, {"name": "a"}, {"name": "b"}]}),
        ),
        (
            "check { id = \"a\" }\ncheck { id = \"b\" }",
            json!({"checks": [{"id": "a"}, {"id": "b"}]}),
        ),
        ("checks { id = \"a\" }", json!({"checks": [{"id": "a"}]})),
        (
            "watches {\n  type = \"key\"\n  key = \"k\"\n  args = [\"/bin/true\"]\n}",
            json!({"watches": [{"type": "key", "key": "k", "args": ["/bin/true"]}]}),
        ),
        (
            "watches = [{ type = \"key\", key = \"a\" }, { type = \"event\" }]",
            json!({"watches": [{"type": "key", "key": "a"}, {"type": "event"}]}),
        ),
        (
            "service {\n  name = \"s\"\n  checks { ttl = \"5s\" }\n}",
            json!({"service": {"name": "s", "checks": [{"ttl": "5s"}]}}),
        ),
        (
            "service {\n  name = \"s\"\n  check { ttl = \"5s\" }\n  check { ttl = \"6s\" }\n}",
            json!({"service": {"name": "s", "checks": [{"ttl": "5s"}, {"ttl": "6s"}]}}),
        ),
        (
            "services {\n  name = \"s\"\n  checks = [{ ttl = \"5s\" }]\n  connect { sidecar_service { checks { tcp = \"x\" } } }\n}",
            json!({"services": [{"name": "s", "checks": [{"ttl": "5s"}],
                "connect": {"sidecar_service": {"checks": [{"tcp": "x"}]}}}]}),
        ),
    ];
    for (text, want) in table {
        assert_eq!(ok(text), want, "{text}");
    }
}

/// The service definition of Consul's "Define services" docs page, HCL and
/// JSON forms, parse to the same value.
#[test]
fn consul_docs_service_with_checks() {
    let hcl = r#"
service {
  name = "redis"
  id   = "redis"
  port = 80
  tags = ["primary"]

  meta = {
    custom_meta_key = "custom_meta_value"
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

  checks = [
    {
      args     = ["/usr/local/bin/check_redis.py"]
      interval = "10s"
    },
    {
      id       = "ttl"
      ttl      = "30s"
    }
  ]
  enable_tag_override = false
  weights = {
    passing = 3
    warning = 1
  }
}
"#;
    let json = json!({"service": {
        "name": "redis", "id": "redis", "port": 80, "tags": ["primary"],
        "meta": {"custom_meta_key": "custom_meta_value"},
        "tagged_addresses": {
            "lan": {"address": "192.168.0.55", "port": 8000},
            "wan": {"address": "198.18.0.23", "port": 80}
        },
        "checks": [
            {"args": ["/usr/local/bin/check_redis.py"], "interval": "10s"},
            {"id": "ttl", "ttl": "30s"}
        ],
        "enable_tag_override": false,
        "weights": {"passing": 3, "warning": 1}
    }});
    assert_eq!(ok(hcl), json);
    let reg = crate::api::body::decode_agent_service_value(ok(hcl)["service"].clone())
        .expect("the agent API decoder takes it");
    assert_eq!(reg.service.name, "redis");
    assert_eq!(reg.checks.len(), 2);
}

#[test]
fn errors_say_line_and_column() {
    let table: Vec<(&str, (usize, usize), &str)> = vec![
        ("a = \"open", (1, 5), "string not terminated"),
        ("a = \"x\ny\"", (1, 5), "string not terminated"),
        ("a = 1\nb 2", (2, 3), "expected '=' or '{' after key \"b\""),
        ("a = 1\n  b = 10s", (2, 7), "quote values"),
        ("a = 1\nb = @", (2, 5), "unexpected character '@'"),
        ("x {\n  y = 1\n", (1, 3), "'{' is never closed"),
        ("l = [1, 2", (1, 5), "'[' is never closed"),
        ("l = [1 2]", (1, 8), "expected ',' or ']'"),
        ("a = yes", (1, 5), "strings need double quotes"),
        ("a = \"\\q\"", (1, 6), "unknown escape"),
        ("a = \"\\u12\"", (1, 6), "4 hex digits"),
        ("a = \"\\uD800\"", (1, 6), "not a character"),
        ("/* open", (1, 1), "comment not terminated"),
        ("h = <<EOF\nno end\n", (1, 5), "heredoc not terminated"),
        ("h = <<EOF x\nEOF", (1, 5), "anchor must end its line"),
        ("h = <<\nEOF", (1, 5), "anchor name"),
        ("n = 99999999999999999999", (1, 5), "out of range"),
        ("n = 1e999", (1, 5), "out of range"),
        ("n = 089", (1, 5), "invalid octal number 089"),
        ("n = -", (1, 5), "'-' must start a number"),
        ("n = 1e", (1, 5), "exponent"),
        ("= 1", (1, 1), "expected a key"),
        ("a = ]", (1, 5), "expected a value"),
        ("a \"b\" = 1", (1, 7), "expected '{' after key"),
        (
            "ports { http = 1 }\nports { dns = 2 }",
            (2, 1),
            "\"ports\" is given more than once",
        ),
        (
            "checks = 1\ncheck { a = 1 }\ncheck { a = 2 }",
            (2, 1),
            "not a list",
        ),
        ("{\"a\": }", (1, 7), "expected value"),
        ("é = 1\n  ü = ?", (2, 7), "unexpected character '?'"),
    ];
    for (text, (line, column), piece) in table {
        let (l, c, message) = err(text);
        assert!(
            message.contains(piece),
            "{text:?}: {message:?} lacks {piece:?}"
        );
        assert_eq!((l, c), (line, column), "{text:?}: {message}");
    }
}

#[test]
fn limits_are_errors_not_crashes() {
    let deep_objects = "a {".repeat(CONFIG_NESTING_MAX + 1);
    assert!(err(&deep_objects).2.contains("nested deeper"));
    let deep_lists = format!("a = {}", "[".repeat(100_000));
    assert!(err(&deep_lists).2.contains("nested deeper"));
    let deep_labels = format!("a {} {{}}", "\"l\" ".repeat(CONFIG_NESTING_MAX + 1));
    assert!(err(&deep_labels).2.contains("nested deeper"));
    let ok_depth = format!(
        "{}{}",
        "a {".repeat(CONFIG_NESTING_MAX),
        "}".repeat(CONFIG_NESTING_MAX)
    );
    assert!(parse(&ok_depth).is_ok());
    let huge = format!("a = \"{}\"", "x".repeat(CONFIG_FILE_BYTES_MAX));
    assert!(err(&huge).2.contains("bytes"));
    let deep_json = format!("{{\"a\": {}", "[".repeat(100_000));
    assert!(parse(&deep_json).is_err());
}

proptest! {
    /// Any text: an error or a value that survives a JSON round trip.
    #[test]
    fn never_panics_and_round_trips(text in "[a-z{}\\[\\]=,\"<\\-\n #/*0-9.eE]{0,80}") {
        if let Ok(value) = parse(&text) {
            let again: Value = serde_json::from_str(&value.to_string()).expect("valid JSON");
            prop_assert_eq!(again, value);
        }
    }
}
