//! Consul's DNS interface (`../shared/CONSUL-REFERENCE.md` §3) through the
//! real `dig` (Debian `dnsutils`) against a real `tribune agent -dev
//! -dns-port <free port>`. Data goes in through the HTTP API, answers come
//! out of dig's normal output, parsed by [`dig`]. Without dig: under `CI`
//! the tests fail (CI installs dnsutils), otherwise they say SKIPPED and
//! return.
//!
//! Expected behaviour is Consul's with its defaults: TTL 0, answers
//! authoritative, instances with a critical check (service or node level)
//! left out, warning kept, NXDOMAIN + SOA when nothing matches, NOERROR + SOA
//! (NODATA) for a name without records of the asked type, REFUSED for names
//! outside the domain (no recursors), a fresh shuffle per answer, UDP
//! answers to non-EDNS clients capped at `udp_answer_limit` (3) and 512
//! bytes with no TC bit, EDNS and TCP answers not capped by count.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::Agent;

// ---------------------------------------------------------------- dig

fn dig_available() -> bool {
    Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// An agent whose DNS server answers, or `None` (after saying SKIPPED) when
/// dig is missing outside CI.
fn start() -> Option<Agent> {
    if !dig_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dig is not installed and CI is set: install dnsutils before the tests"
        );
        let _ = writeln!(std::io::stderr(), "\n*** SKIPPED: dig not installed ***\n");
        return None;
    }
    let agent = Agent::start();
    // The DNS listeners may come up after the HTTP one.
    let probe = format!("{}.node.consul", agent.node);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if try_dig(&agent, &["+time=1", &probe]).is_some() {
            return Some(agent);
        }
        assert!(
            Instant::now() < deadline,
            "no DNS answer on 127.0.0.1:{} (UDP) for {probe} within 10 s; \
             is `-dns-port` served?",
            agent.dns_port
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One resource record as dig prints it: `name ttl class type rdata...`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    class: String,
    rtype: String,
    /// The rdata, fields joined by one space.
    data: String,
}

/// dig's normal output, parsed.
#[derive(Clone, Debug)]
struct DigOutput {
    /// `NOERROR`, `NXDOMAIN`, `REFUSED`, ...
    status: String,
    /// Header flags: `qr`, `aa`, `tc`, `rd`, `ra`, ...
    flags: Vec<String>,
    /// Whether the response carried an OPT record (EDNS).
    edns: bool,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    /// `;; MSG SIZE  rcvd: N`.
    size: Option<usize>,
    raw: String,
}

impl DigOutput {
    fn flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The rdata of the answers of type `rtype`.
    fn answers(&self, rtype: &str) -> Vec<String> {
        self.answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect()
    }

    /// The rdata of the answers of type `rtype`, as a set.
    fn answer_set(&self, rtype: &str) -> BTreeSet<String> {
        self.answers(rtype).into_iter().collect()
    }

    /// The address of the A record named `name` in the additional section.
    fn additional_a(&self, name: &str) -> Option<&str> {
        self.additional
            .iter()
            .find(|r| r.rtype == "A" && r.name.eq_ignore_ascii_case(name))
            .map(|r| r.data.as_str())
    }

    fn all_records(&self) -> impl Iterator<Item = &Rr> {
        self.answer
            .iter()
            .chain(&self.authority)
            .chain(&self.additional)
    }
}

fn parse_rr(line: &str) -> Option<Rr> {
    let mut fields = line.split_whitespace();
    let name = fields.next()?.to_string();
    let ttl = fields.next()?.parse().ok()?;
    let class = fields.next()?.to_string();
    let rtype = fields.next()?.to_string();
    let data = fields.collect::<Vec<_>>().join(" ");
    Some(Rr {
        name,
        ttl,
        class,
        rtype,
        data,
    })
}

/// Parses dig's default output; `None` when it holds no response header
/// (timeout, connection refused).
fn parse_dig(raw: &str) -> Option<DigOutput> {
    #[derive(Clone, Copy, PartialEq)]
    enum Section {
        None,
        Answer,
        Authority,
        Additional,
    }
    let mut out = DigOutput {
        status: String::new(),
        flags: Vec::new(),
        edns: false,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        size: None,
        raw: raw.to_string(),
    };
    let mut section = Section::None;
    let mut header = false;
    for line in raw.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.split_once("status: ").map(|(_, r)| r) {
            out.status = rest
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            header = true;
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            out.flags = rest
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
        } else if line.starts_with(";; OPT PSEUDOSECTION:") {
            out.edns = true;
            section = Section::None;
        } else if line.starts_with(";; ANSWER SECTION:") {
            section = Section::Answer;
        } else if line.starts_with(";; AUTHORITY SECTION:") {
            section = Section::Authority;
        } else if line.starts_with(";; ADDITIONAL SECTION:") {
            section = Section::Additional;
        } else if let Some(rest) = line.strip_prefix(";; MSG SIZE  rcvd:") {
            out.size = rest.trim().parse().ok();
        } else if line.is_empty() || line.starts_with(';') {
            if line.is_empty() {
                section = Section::None;
            }
        } else if let Some(rr) = parse_rr(line) {
            match section {
                Section::Answer => out.answer.push(rr),
                Section::Authority => out.authority.push(rr),
                Section::Additional => out.additional.push(rr),
                Section::None => {}
            }
        }
    }
    header.then_some(out)
}

fn dig_command(agent: &Agent, args: &[&str]) -> Command {
    let mut cmd = Command::new("dig");
    cmd.arg("@127.0.0.1")
        .args(["-p", &agent.dns_port.to_string()])
        .args(["+time=5", "+tries=1"])
        .args(args);
    cmd
}

fn try_dig(agent: &Agent, args: &[&str]) -> Option<DigOutput> {
    let out = dig_command(agent, args).output().expect("run dig");
    parse_dig(&String::from_utf8_lossy(&out.stdout))
}

/// `dig @127.0.0.1 -p <dns_port> +time=5 +tries=1 <args>`, parsed; panics
/// (with dig's output) when no response came back.
#[track_caller]
fn dig(agent: &Agent, args: &[&str]) -> DigOutput {
    let out = dig_command(agent, args).output().expect("run dig");
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_dig(&stdout).unwrap_or_else(|| {
        panic!(
            "dig {args:?} on port {} got no response:\n{stdout}{}",
            agent.dns_port,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `dig +short <args>`: the rdata lines.
#[track_caller]
fn dig_short(agent: &Agent, args: &[&str]) -> Vec<String> {
    let out = dig_command(agent, &[&["+short"][..], args].concat())
        .output()
        .expect("run dig");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !stdout.lines().any(|l| l.starts_with(";;")),
        "dig +short {args:?} on port {} failed:\n{stdout}",
        agent.dns_port
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------- assertions

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[track_caller]
fn assert_status(out: &DigOutput, status: &str) {
    assert_eq!(out.status, status, "status; dig said:\n{}", out.raw);
}

#[track_caller]
fn assert_authoritative(out: &DigOutput) {
    assert!(out.flag("aa"), "aa flag expected; dig said:\n{}", out.raw);
}

/// Consul's default TTL is 0 for every record (SOA included: its TTL is
/// the SOA minimum, 0).
#[track_caller]
fn assert_ttl_zero(out: &DigOutput) {
    for rr in out.all_records() {
        assert_eq!(rr.ttl, 0, "TTL of {rr:?}; dig said:\n{}", out.raw);
    }
}

/// Exactly one SOA in authority: `consul. 0 IN SOA ns.consul.
/// hostmaster.consul. <unix time> 3600 600 86400 0`.
#[track_caller]
fn assert_soa(out: &DigOutput) {
    let soas: Vec<&Rr> = out.authority.iter().filter(|r| r.rtype == "SOA").collect();
    assert_eq!(
        soas.len(),
        1,
        "one SOA in authority; dig said:\n{}",
        out.raw
    );
    let soa = soas[0];
    assert_eq!(soa.name, "consul.", "SOA owner; dig said:\n{}", out.raw);
    assert_eq!(soa.ttl, 0, "SOA TTL; dig said:\n{}", out.raw);
    let f: Vec<&str> = soa.data.split(' ').collect();
    assert_eq!(f.len(), 7, "SOA rdata {:?}", soa.data);
    assert_eq!(f[0], "ns.consul.", "SOA mname");
    assert_eq!(f[1], "hostmaster.consul.", "SOA rname");
    let serial: u64 = f[2].parse().expect("SOA serial is a number");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    assert!(
        serial.abs_diff(now) < 3600,
        "SOA serial {serial} is the unix time (now {now})"
    );
    assert_eq!(&f[3..], ["3600", "600", "86400", "0"], "SOA timers");
}

#[track_caller]
fn assert_nxdomain(out: &DigOutput) {
    assert_status(out, "NXDOMAIN");
    assert_authoritative(out);
    assert!(out.answer.is_empty(), "no answers; dig said:\n{}", out.raw);
    assert_soa(out);
}

// ---------------------------------------------------------------- data

#[track_caller]
fn register(agent: &Agent, body: Value) {
    let resp = agent.put_json("/v1/catalog/register", &body).expect(200);
    assert_eq!(resp.text(), "true", "register {body}");
}

/// Node `node` at `addr` with one service instance and its checks.
#[track_caller]
fn instance(agent: &Agent, node: &str, addr: &str, service: Value, checks: Value) {
    register(
        agent,
        json!({"Node": node, "Address": addr, "Service": service, "Checks": checks}),
    );
}

#[track_caller]
fn service_check(id: &str, service_id: &str, status: &str) -> Value {
    json!({"CheckID": id, "Name": id, "Status": status, "ServiceID": service_id})
}

/// The `web` fixture:
///
/// | node | node addr | instance | tags | own addr | port | checks | in DNS |
/// |---|---|---|---|---|---|---|---|
/// | n1 | 10.0.0.1 | web1 | v1, primary | – | 8080 | passing | yes |
/// | n2 | 10.0.0.2 | web2 | v2 | 10.0.1.2 | 8081 | warning | yes |
/// | n3 | 10.0.0.3 | web3 | v1 | – | 8082 | critical | no |
/// | n4 | 10.0.0.4 | web4 | – | – | 8083 | none | yes |
/// | n5 | 10.0.0.5 | web5 | v1 | – | 8084 | passing + critical node check | no |
///
/// plus `db` on n1 with a critical check (all instances critical), which
/// must not affect web1.
fn web_fixture(agent: &Agent) {
    instance(
        agent,
        "n1",
        "10.0.0.1",
        json!({"ID": "web1", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080}),
        json!([service_check("web1-check", "web1", "passing")]),
    );
    instance(
        agent,
        "n2",
        "10.0.0.2",
        json!({"ID": "web2", "Service": "web", "Tags": ["v2"], "Address": "10.0.1.2", "Port": 8081}),
        json!([service_check("web2-check", "web2", "warning")]),
    );
    instance(
        agent,
        "n3",
        "10.0.0.3",
        json!({"ID": "web3", "Service": "web", "Tags": ["v1"], "Port": 8082}),
        json!([service_check("web3-check", "web3", "critical")]),
    );
    instance(
        agent,
        "n4",
        "10.0.0.4",
        json!({"ID": "web4", "Service": "web", "Port": 8083}),
        json!([]),
    );
    instance(
        agent,
        "n5",
        "10.0.0.5",
        json!({"ID": "web5", "Service": "web", "Tags": ["v1"], "Port": 8084}),
        json!([
            service_check("web5-check", "web5", "passing"),
            {"CheckID": "n5-node", "Name": "n5 node", "Status": "critical"}
        ]),
    );
    instance(
        agent,
        "n1",
        "10.0.0.1",
        json!({"ID": "db1", "Service": "db", "Port": 5432}),
        json!([service_check("db1-check", "db1", "critical")]),
    );
}

/// Addresses of the healthy `web` instances.
fn web_healthy() -> BTreeSet<String> {
    set(&["10.0.0.1", "10.0.1.2", "10.0.0.4"])
}

/// SRV rdata of the healthy `web` instances.
fn web_srv() -> BTreeSet<String> {
    set(&[
        "1 1 8080 n1.node.dc1.consul.",
        "1 1 8081 0a000102.addr.dc1.consul.",
        "1 1 8083 n4.node.dc1.consul.",
    ])
}

/// `count` nodes `<prefix>1..` at `10.<net>.0.N`, each with one passing
/// instance of `service` on port 9000+N.
fn many_instances(agent: &Agent, service: &str, prefix: &str, net: u8, count: usize) {
    for i in 1..=count {
        let id = format!("{service}-{i}");
        instance(
            agent,
            &format!("{prefix}{i}"),
            &format!("10.{net}.0.{i}"),
            json!({"ID": id, "Service": service, "Port": 9000 + i}),
            json!([service_check(&format!("{id}-check"), &id, "passing")]),
        );
    }
}

// ---------------------------------------------------------------- service lookups

#[test]
fn service_a_records_leave_out_critical_instances() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    for name in ["web.service.consul", "web.service.dc1.consul"] {
        let out = dig(&agent, &[name, "A"]);
        assert_status(&out, "NOERROR");
        assert_authoritative(&out);
        assert!(!out.flag("tc"), "no TC; dig said:\n{}", out.raw);
        assert_ttl_zero(&out);
        assert_eq!(out.answer_set("A"), web_healthy(), "{name}:\n{}", out.raw);
        assert_eq!(
            out.answer.len(),
            3,
            "one A per healthy instance:\n{}",
            out.raw
        );
        for rr in &out.answer {
            assert!(
                rr.name.eq_ignore_ascii_case(&format!("{name}.")),
                "answers are named as asked: {rr:?}"
            );
            assert_eq!(rr.class, "IN");
        }
    }
    // +short agrees.
    let short: BTreeSet<String> = dig_short(&agent, &["web.service.consul"])
        .into_iter()
        .collect();
    assert_eq!(short, web_healthy());
}

#[test]
fn unknown_and_all_critical_services_are_nxdomain_with_soa() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    let out = dig(&agent, &["nosuch.service.consul", "A"]);
    assert_nxdomain(&out);
    assert_ttl_zero(&out);
    // db's only instance is critical.
    let out = dig(&agent, &["db.service.consul", "A"]);
    assert_nxdomain(&out);
    let out = dig(&agent, &["db.service.consul", "SRV"]);
    assert_nxdomain(&out);
    // A tag nobody healthy carries.
    let out = dig(&agent, &["nosuchtag.web.service.consul", "A"]);
    assert_nxdomain(&out);
}

#[test]
fn tag_filter_and_rfc2782_names() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);

    // web3 is v1 too but critical; web5 is v1 but its node is critical.
    let out = dig(&agent, &["v1.web.service.consul", "A"]);
    assert_status(&out, "NOERROR");
    assert_authoritative(&out);
    assert_ttl_zero(&out);
    assert_eq!(out.answer_set("A"), set(&["10.0.0.1"]), "{}", out.raw);
    let out = dig(&agent, &["v2.web.service.dc1.consul", "A"]);
    assert_eq!(out.answer_set("A"), set(&["10.0.1.2"]), "{}", out.raw);

    // `_tcp` is no tag filter.
    let out = dig(&agent, &["_web._tcp.service.consul", "SRV"]);
    assert_status(&out, "NOERROR");
    assert_authoritative(&out);
    assert_ttl_zero(&out);
    assert_eq!(out.answer_set("SRV"), web_srv(), "{}", out.raw);

    let out = dig(&agent, &["_web._v1.service.consul", "SRV"]);
    assert_status(&out, "NOERROR");
    assert_eq!(
        out.answer_set("SRV"),
        set(&["1 1 8080 n1.node.dc1.consul."]),
        "{}",
        out.raw
    );
    assert_eq!(out.additional_a("n1.node.dc1.consul."), Some("10.0.0.1"));

    let out = dig(&agent, &["_web._primary.service.dc1.consul", "SRV"]);
    assert_eq!(
        out.answer_set("SRV"),
        set(&["1 1 8080 n1.node.dc1.consul."]),
        "{}",
        out.raw
    );
}

#[test]
fn srv_targets_and_additional_addresses() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    for name in ["web.service.consul", "web.service.dc1.consul"] {
        let out = dig(&agent, &[name, "SRV"]);
        assert_status(&out, "NOERROR");
        assert_authoritative(&out);
        assert_ttl_zero(&out);
        assert_eq!(
            out.answer.len(),
            3,
            "one SRV per healthy instance:\n{}",
            out.raw
        );
        assert_eq!(out.answer_set("SRV"), web_srv(), "{}", out.raw);
        // No own address: the node's name and address.
        assert_eq!(
            out.additional_a("n1.node.dc1.consul."),
            Some("10.0.0.1"),
            "additional A for n1:\n{}",
            out.raw
        );
        assert_eq!(
            out.additional_a("n4.node.dc1.consul."),
            Some("10.0.0.4"),
            "additional A for n4:\n{}",
            out.raw
        );
        // Own IP address: the hex addr name and the service's address.
        assert_eq!(
            out.additional_a("0a000102.addr.dc1.consul."),
            Some("10.0.1.2"),
            "additional A for web2's own address:\n{}",
            out.raw
        );
        let unhealthy = set(&["10.0.0.3", "10.0.0.5", "10.0.0.2"]);
        for rr in out.all_records() {
            assert!(
                !(rr.rtype == "A" && unhealthy.contains(&rr.data)),
                "no record for an unhealthy instance or a node whose service has \
                 its own address: {rr:?}\n{}",
                out.raw
            );
        }
    }
}

#[test]
fn srv_weight_follows_check_status() {
    let Some(agent) = start() else { return };
    let weights = json!({"Passing": 10, "Warning": 3});
    instance(
        &agent,
        "w1",
        "10.0.7.1",
        json!({"ID": "wt1", "Service": "wt", "Port": 1001, "Weights": weights}),
        json!([service_check("wt1-check", "wt1", "passing")]),
    );
    instance(
        &agent,
        "w2",
        "10.0.7.2",
        json!({"ID": "wt2", "Service": "wt", "Port": 1002, "Weights": weights}),
        json!([service_check("wt2-check", "wt2", "warning")]),
    );
    let out = dig(&agent, &["wt.service.consul", "SRV"]);
    assert_status(&out, "NOERROR");
    assert_eq!(
        out.answer_set("SRV"),
        set(&[
            "1 10 1001 w1.node.dc1.consul.",
            "1 3 1002 w2.node.dc1.consul."
        ]),
        "{}",
        out.raw
    );
}

// ---------------------------------------------------------------- node, addr, PTR

#[test]
fn node_lookups() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    for name in ["n1.node.consul", "n1.node.dc1.consul"] {
        let out = dig(&agent, &[name, "A"]);
        assert_status(&out, "NOERROR");
        assert_authoritative(&out);
        assert_ttl_zero(&out);
        assert_eq!(out.answers("A"), ["10.0.0.1"], "{name}:\n{}", out.raw);
    }
    // A node is answered whatever its checks say.
    let out = dig(&agent, &["n5.node.consul", "A"]);
    assert_eq!(out.answers("A"), ["10.0.0.5"], "{}", out.raw);

    // The agent's own node, at its catalog address.
    let node = agent
        .get(&format!("/v1/catalog/node/{}", agent.node))
        .expect(200)
        .json();
    let address = node["Node"]["Address"]
        .as_str()
        .expect("Node.Address")
        .to_string();
    let out = dig(&agent, &[&format!("{}.node.consul", agent.node), "A"]);
    assert_status(&out, "NOERROR");
    assert_eq!(out.answers("A"), [address.as_str()], "{}", out.raw);
    // And the `consul` service every server registers.
    let out = dig(&agent, &["consul.service.consul", "A"]);
    assert_status(&out, "NOERROR");
    assert_eq!(out.answers("A"), [address], "{}", out.raw);

    let out = dig(&agent, &["nosuch.node.consul", "A"]);
    assert_nxdomain(&out);
    assert_ttl_zero(&out);

    // The node exists, without MX records: NODATA.
    let out = dig(&agent, &["n1.node.consul", "MX"]);
    assert_status(&out, "NOERROR");
    assert_authoritative(&out);
    assert!(out.answer.is_empty(), "no answers:\n{}", out.raw);
    assert_soa(&out);
}

#[test]
fn addr_lookup() {
    let Some(agent) = start() else { return };
    let out = dig(&agent, &["7f000001.addr.dc1.consul", "A"]);
    assert_status(&out, "NOERROR");
    assert_authoritative(&out);
    assert_ttl_zero(&out);
    assert_eq!(out.answers("A"), ["127.0.0.1"], "{}", out.raw);
    let out = dig(&agent, &["0a000102.addr.dc1.consul", "A"]);
    assert_eq!(out.answers("A"), ["10.0.1.2"], "{}", out.raw);
}

#[test]
fn ptr_lookup_of_a_node_address() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    let out = dig(&agent, &["-x", "10.0.0.4"]);
    assert_status(&out, "NOERROR");
    assert_ttl_zero(&out);
    assert_eq!(out.answers("PTR"), ["n4.node.dc1.consul."], "{}", out.raw);
    assert_eq!(out.answer[0].name, "4.0.0.10.in-addr.arpa.");
    assert_eq!(
        dig_short(&agent, &["-x", "10.0.0.1"]),
        ["n1.node.dc1.consul."]
    );
}

// ---------------------------------------------------------------- protocol

#[test]
fn queries_are_case_insensitive() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    let out = dig(&agent, &["WEB.SERVICE.CONSUL", "A"]);
    assert_status(&out, "NOERROR");
    assert_authoritative(&out);
    assert_eq!(out.answer_set("A"), web_healthy(), "{}", out.raw);
    let out = dig(&agent, &["Web.Service.Dc1.Consul", "SRV"]);
    assert_eq!(out.answer_set("SRV"), web_srv(), "{}", out.raw);
    let out = dig(&agent, &["V1.WEB.SERVICE.CONSUL", "A"]);
    assert_eq!(out.answer_set("A"), set(&["10.0.0.1"]), "{}", out.raw);
    let out = dig(&agent, &["N1.NODE.CONSUL", "A"]);
    assert_eq!(out.answers("A"), ["10.0.0.1"], "{}", out.raw);
    let out = dig(&agent, &["NOSUCH.SERVICE.CONSUL", "A"]);
    assert_nxdomain(&out);
}

#[test]
fn tcp_queries() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    let out = dig(&agent, &["+tcp", "web.service.consul", "A"]);
    assert_status(&out, "NOERROR");
    assert_authoritative(&out);
    assert_ttl_zero(&out);
    assert_eq!(out.answer_set("A"), web_healthy(), "{}", out.raw);
    let out = dig(&agent, &["+tcp", "web.service.consul", "SRV"]);
    assert_eq!(out.answer_set("SRV"), web_srv(), "{}", out.raw);
    assert_eq!(out.additional_a("n1.node.dc1.consul."), Some("10.0.0.1"));
    let out = dig(&agent, &["+tcp", "nosuch.service.consul", "A"]);
    assert_nxdomain(&out);
    // Several queries on one TCP connection (dig sends them in a row with
    // +keepopen).
    let out = dig_command(
        &agent,
        &[
            "+tcp",
            "+keepopen",
            "+short",
            "n1.node.consul",
            "n4.node.consul",
        ],
    )
    .output()
    .expect("run dig");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines, ["10.0.0.1", "10.0.0.4"], "dig said:\n{stdout}");
}

#[test]
fn names_outside_the_domain_are_refused() {
    let Some(agent) = start() else { return };
    for args in [&["example.com", "A"][..], &["+tcp", "example.com", "A"][..]] {
        let out = dig(&agent, args);
        assert_status(&out, "REFUSED");
        assert!(out.answer.is_empty(), "no answers:\n{}", out.raw);
        assert!(
            !out.flag("ra"),
            "no recursion available without recursors:\n{}",
            out.raw
        );
    }
}

#[test]
fn unknown_datacenter_is_nxdomain() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);
    for name in ["web.service.dc9.consul", "n1.node.dc9.consul"] {
        let out = dig(&agent, &[name, "A"]);
        assert_status(&out, "NXDOMAIN");
        assert!(out.answer.is_empty(), "{}", out.raw);
    }
}

#[test]
fn answers_are_shuffled() {
    let Some(agent) = start() else { return };
    many_instances(&agent, "shuf", "s", 4, 5);
    let all: BTreeSet<String> = (1..=5).map(|i| format!("10.4.0.{i}")).collect();
    let mut orders = BTreeSet::new();
    for _ in 0..30 {
        let order = dig_short(&agent, &["shuf.service.consul", "A"]);
        assert_eq!(
            order.iter().cloned().collect::<BTreeSet<_>>(),
            all,
            "every healthy instance, once: {order:?}"
        );
        assert_eq!(order.len(), 5, "no duplicates: {order:?}");
        orders.insert(order);
    }
    assert!(
        orders.len() > 1,
        "30 answers all came in the same order {orders:?}: Consul shuffles every answer"
    );
    // SRV answers are shuffled too.
    let mut srv_orders = BTreeSet::new();
    for _ in 0..30 {
        srv_orders.insert(dig_short(&agent, &["shuf.service.consul", "SRV"]));
    }
    assert!(
        srv_orders.len() > 1,
        "SRV order never changed: {srv_orders:?}"
    );
}

// ---------------------------------------------------------------- size limits

const BIG: usize = 60;

fn big_fixture(agent: &Agent) {
    many_instances(agent, "big", "b", 5, BIG);
}

fn big_addresses() -> BTreeSet<String> {
    (1..=BIG).map(|i| format!("10.5.0.{i}")).collect()
}

#[test]
fn large_service_over_udp_without_edns_fits_512_bytes_without_tc() {
    let Some(agent) = start() else { return };
    big_fixture(&agent);
    for qtype in ["A", "SRV"] {
        // +ignore: show the UDP answer as it is, no retry over TCP.
        let out = dig(&agent, &["+noedns", "+ignore", "big.service.consul", qtype]);
        assert_status(&out, "NOERROR");
        assert!(
            !out.edns,
            "no OPT in reply to a non-EDNS query:\n{}",
            out.raw
        );
        assert!(
            !out.flag("tc"),
            "Consul does not set TC by default (enable_truncate=false):\n{}",
            out.raw
        );
        let size = out.size.expect("MSG SIZE line");
        assert!(size <= 512, "{qtype}: {size} bytes > 512:\n{}", out.raw);
        let n = out.answers(qtype).len();
        assert!(
            (1..BIG).contains(&n),
            "{qtype}: some but not all of {BIG} answers, got {n}:\n{}",
            out.raw
        );
        for rr in &out.answer {
            if qtype == "A" {
                assert!(big_addresses().contains(&rr.data), "{rr:?}");
            }
        }
        if qtype == "SRV" {
            // Additional records follow the answers that were kept.
            for srv in out.answers("SRV") {
                let target = srv.rsplit(' ').next().unwrap_or_default().to_string();
                assert!(
                    out.additional_a(&target).is_some(),
                    "additional A for kept target {target}:\n{}",
                    out.raw
                );
            }
            for rr in out.additional.iter().filter(|r| r.rtype == "A") {
                assert!(
                    out.answers("SRV")
                        .iter()
                        .any(|s| s.rsplit(' ').next() == Some(rr.name.as_str())),
                    "additional {rr:?} without its SRV:\n{}",
                    out.raw
                );
            }
        }
    }
}

/// Consul caps UDP answers to non-EDNS clients at `udp_answer_limit`
/// (default 3) before the 512-byte trim.
#[test]
fn udp_without_edns_is_capped_at_udp_answer_limit_3() {
    let Some(agent) = start() else { return };
    many_instances(&agent, "five", "f", 6, 5);
    let out = dig(&agent, &["+noedns", "+ignore", "five.service.consul", "A"]);
    assert_status(&out, "NOERROR");
    assert_eq!(out.answers("A").len(), 3, "{}", out.raw);
    assert!(!out.flag("tc"), "{}", out.raw);
    // With EDNS (dig's default, 1232 bytes) all five.
    let out = dig(&agent, &["+ignore", "five.service.consul", "A"]);
    assert_eq!(out.answers("A").len(), 5, "{}", out.raw);
}

#[test]
fn large_service_with_edns_buffer_and_over_tcp() {
    let Some(agent) = start() else { return };
    big_fixture(&agent);
    let small = dig(&agent, &["+noedns", "+ignore", "big.service.consul", "A"]);
    let small = small.answers("A").len();

    let out = dig(
        &agent,
        &["+bufsize=4096", "+ignore", "big.service.consul", "A"],
    );
    assert_status(&out, "NOERROR");
    assert!(out.edns, "OPT echoed to an EDNS query:\n{}", out.raw);
    assert!(!out.flag("tc"), "{}", out.raw);
    let size = out.size.expect("MSG SIZE line");
    assert!(size <= 4096, "{size} bytes > 4096");
    let n = out.answers("A").len();
    assert!(n > small, "EDNS 4096 gives more than {small}, got {n}");
    // 60 A records take ~1 KB: all fit.
    assert_eq!(out.answer_set("A"), big_addresses(), "{}", out.raw);

    let out = dig(&agent, &["+tcp", "big.service.consul", "A"]);
    assert_status(&out, "NOERROR");
    assert_eq!(out.answers("A").len(), BIG, "{}", out.raw);
    assert_eq!(out.answer_set("A"), big_addresses());

    let out = dig(&agent, &["+tcp", "big.service.consul", "SRV"]);
    assert_status(&out, "NOERROR");
    assert_eq!(out.answers("SRV").len(), BIG, "{}", out.raw);
    for i in 1..=BIG {
        let target = format!("b{i}.node.dc1.consul.");
        assert!(
            out.answer_set("SRV")
                .contains(&format!("1 1 {} {target}", 9000 + i)),
            "SRV for b{i}:\n{}",
            out.raw
        );
        assert_eq!(
            out.additional_a(&target),
            Some(format!("10.5.0.{i}").as_str()),
            "additional A for {target}"
        );
    }
}

// ---------------------------------------------------------------- health changes

#[test]
fn health_change_through_the_catalog_shows_on_the_next_query() {
    let Some(agent) = start() else { return };
    let flip = |status: &str| {
        instance(
            &agent,
            "fl1",
            "10.0.3.1",
            json!({"ID": "flip1", "Service": "flip", "Port": 1}),
            json!([service_check("flip1-check", "flip1", status)]),
        );
    };
    flip("passing");
    instance(
        &agent,
        "fl2",
        "10.0.3.2",
        json!({"ID": "flip2", "Service": "flip", "Port": 2}),
        json!([service_check("flip2-check", "flip2", "passing")]),
    );
    let both = set(&["10.0.3.1", "10.0.3.2"]);
    let out = dig(&agent, &["flip.service.consul", "A"]);
    assert_eq!(out.answer_set("A"), both, "{}", out.raw);

    flip("critical");
    let out = dig(&agent, &["flip.service.consul", "A"]);
    assert_eq!(out.answer_set("A"), set(&["10.0.3.2"]), "{}", out.raw);
    let out = dig(&agent, &["flip.service.consul", "SRV"]);
    assert_eq!(
        out.answer_set("SRV"),
        set(&["1 1 2 fl2.node.dc1.consul."]),
        "{}",
        out.raw
    );

    flip("warning");
    let out = dig(&agent, &["flip.service.consul", "A"]);
    assert_eq!(out.answer_set("A"), both, "warning is kept: {}", out.raw);

    flip("passing");
    let out = dig(&agent, &["flip.service.consul", "A"]);
    assert_eq!(out.answer_set("A"), both, "{}", out.raw);

    // A critical node-level check removes the node's instances.
    register(
        &agent,
        json!({"Node": "fl2", "Address": "10.0.3.2",
               "Check": {"CheckID": "fl2-node", "Name": "fl2 node", "Status": "critical"}}),
    );
    let out = dig(&agent, &["flip.service.consul", "A"]);
    assert_eq!(out.answer_set("A"), set(&["10.0.3.1"]), "{}", out.raw);

    // Deregistered: gone; nothing left: NXDOMAIN.
    let resp = agent
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": "fl1", "ServiceID": "flip1"}),
        )
        .expect(200);
    assert_eq!(resp.text(), "true");
    let out = dig(&agent, &["flip.service.consul", "A"]);
    assert_nxdomain(&out);
}

#[test]
fn ttl_check_through_the_agent_api() {
    let Some(agent) = start() else { return };
    agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "ttlweb", "ID": "ttl1", "Port": 9100, "Check": {"TTL": "1s"}}),
        )
        .expect(200);
    let node = agent
        .get(&format!("/v1/catalog/node/{}", agent.node))
        .expect(200)
        .json();
    let address = node["Node"]["Address"]
        .as_str()
        .expect("Node.Address")
        .to_string();

    // A new TTL check starts critical.
    let out = dig(&agent, &["ttlweb.service.consul", "A"]);
    assert_nxdomain(&out);

    agent
        .put("/v1/agent/check/pass/service:ttl1", "")
        .expect(200);
    let passed = Instant::now();
    // Within the TTL it is in DNS (polled briefly: the agent may sync to
    // the catalog asynchronously).
    let out = dig_until_found(&agent, "ttlweb.service.consul", passed);
    assert_status(&out, "NOERROR");
    assert_eq!(out.answers("A"), [address.as_str()], "{}", out.raw);
    let out = dig(&agent, &["ttlweb.service.consul", "SRV"]);
    assert_eq!(
        out.answers("SRV"),
        [format!("1 1 9100 {}.node.dc1.consul.", agent.node)],
        "{}",
        out.raw
    );

    // No pass for 2.5 s (TTL 1 s): critical, gone.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(passed.elapsed()));
    let out = dig(&agent, &["ttlweb.service.consul", "A"]);
    assert_nxdomain(&out);

    // Passing again brings it back.
    agent
        .put("/v1/agent/check/pass/service:ttl1", "")
        .expect(200);
    let out = dig_until_found(&agent, "ttlweb.service.consul", Instant::now());
    assert_eq!(out.answers("A"), [address], "{}", out.raw);
}

/// `dig <name> A` until NOERROR, for at most 900 ms after `since` (under
/// the 1 s TTL).
fn dig_until_found(agent: &Agent, name: &str, since: Instant) -> DigOutput {
    loop {
        let out = dig(agent, &[name, "A"]);
        if out.status == "NOERROR" || since.elapsed() > Duration::from_millis(900) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------- bad input

/// Sends `payload` from a fresh socket and returns the reply, if one comes
/// within 500 ms.
fn udp_exchange(agent: &Agent, payload: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("set_read_timeout");
    sock.connect(("127.0.0.1", agent.dns_port))
        .expect("connect UDP");
    sock.send(payload).expect("send UDP");
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// A query header: id 0xBEEF, RD, `qdcount` questions, nothing else.
fn header(flags_hi: u8, qdcount: u16) -> Vec<u8> {
    let mut h = vec![0xBE, 0xEF, flags_hi, 0x00];
    h.extend_from_slice(&qdcount.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    h
}

/// A well-formed query for `web.service.consul` A with the given header
/// flags byte.
fn query(flags_hi: u8) -> Vec<u8> {
    let mut q = header(flags_hi, 1);
    for label in ["web", "service", "consul"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[track_caller]
fn assert_still_answers(agent: &Agent, after: &str) {
    let out = try_dig(agent, &["web.service.consul", "A"])
        .unwrap_or_else(|| panic!("DNS server stopped answering after {after}"));
    assert_eq!(
        out.answer_set("A"),
        web_healthy(),
        "after {after}: {}",
        out.raw
    );
}

#[test]
fn bad_packets_do_not_stop_the_server() {
    let Some(agent) = start() else { return };
    web_fixture(&agent);

    // A raw well-formed query works (sanity check for the helpers below).
    let reply = udp_exchange(&agent, &query(0x01)).expect("reply to a well-formed query");
    assert!(reply.len() > 12, "{reply:?}");
    assert_eq!(&reply[..2], &[0xBE, 0xEF], "id echoed");
    assert!(reply[2] & 0x80 != 0, "QR set");
    assert_eq!(reply[3] & 0x0F, 0, "NOERROR");

    let mut cut_question = query(0x01);
    cut_question.truncate(cut_question.len() - 7);
    let mut bad_label = header(0x01, 1);
    bad_label.extend_from_slice(&[63, b'a', b'b']); // label says 63 bytes, has 2
    let mut pointer_loop = header(0x01, 1);
    pointer_loop.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]); // name points at itself
    let garbage: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        // (what, bytes, must a reply, if any, be FORMERR for id 0xBEEF?)
        ("an empty datagram", Vec::new(), false),
        (
            "a 5-byte truncated header",
            vec![0xBE, 0xEF, 0x01, 0x00, 0x00],
            false,
        ),
        (
            "an 11-byte truncated header",
            header(0x01, 1)[..11].to_vec(),
            false,
        ),
        ("300 bytes of garbage", garbage, false),
        ("a query cut inside its question", cut_question, true),
        ("a label longer than the packet", bad_label, true),
        ("a compression pointer loop", pointer_loop, true),
        (
            "a header announcing 1 question and none",
            header(0x01, 1),
            true,
        ),
    ];
    for (what, bytes, formerr) in &cases {
        if let Some(reply) = udp_exchange(&agent, bytes) {
            if *formerr {
                assert!(reply.len() >= 12, "reply to {what} is a header: {reply:?}");
                assert_eq!(&reply[..2], &[0xBE, 0xEF], "reply to {what} echoes the id");
                assert!(reply[2] & 0x80 != 0, "reply to {what} has QR");
                assert_eq!(
                    reply[3] & 0x0F,
                    1,
                    "a reply to {what} can only be FORMERR: {reply:?}"
                );
            }
        }
        assert_still_answers(&agent, what);
    }

    // A response (QR=1) is never answered: that is how reflection loops
    // start.
    assert_eq!(
        udp_exchange(&agent, &query(0x81)),
        None,
        "a packet with QR=1 was answered"
    );
    assert_still_answers(&agent, "a packet with QR=1");

    // TCP: a garbage frame, a frame announcing more than it sends, and an
    // idle connection held open must not block other clients.
    let tcp = |bytes: &[u8]| {
        let mut s = TcpStream::connect(("127.0.0.1", agent.dns_port)).expect("TCP connect");
        let _ = s.write_all(bytes);
        s
    };
    let mut framed = vec![0, 5];
    framed.extend_from_slice(&[0xFF; 5]);
    drop(tcp(&framed));
    let _partial = tcp(&[0xFF, 0xFF, 1, 2, 3]);
    let _idle = tcp(&[]);
    let out = dig(&agent, &["+tcp", "web.service.consul", "A"]);
    assert_eq!(out.answer_set("A"), web_healthy(), "{}", out.raw);
    assert_still_answers(&agent, "bad TCP frames");
}

// ---------------------------------------------------------------- the parser itself

#[test]
fn dig_output_parser() {
    let raw = "\
; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> @127.0.0.1 -p 8600 web.service.consul SRV
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4242
;; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 2
;; WARNING: recursion requested but not available

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; QUESTION SECTION:
;web.service.consul.\t\tIN\tSRV

;; ANSWER SECTION:
web.service.consul.\t0\tIN\tSRV\t1 1 8080 n1.node.dc1.consul.

;; ADDITIONAL SECTION:
n1.node.dc1.consul.\t0\tIN\tA\t10.0.0.1

;; Query time: 0 msec
;; SERVER: 127.0.0.1#8600(127.0.0.1) (UDP)
;; MSG SIZE  rcvd: 99
";
    let out = parse_dig(raw).expect("parsed");
    assert_eq!(out.status, "NOERROR");
    assert_eq!(out.flags, ["qr", "aa", "rd"]);
    assert!(out.flag("aa") && !out.flag("tc"));
    assert!(out.edns);
    assert_eq!(out.answers("SRV"), ["1 1 8080 n1.node.dc1.consul."]);
    assert!(out.authority.is_empty());
    assert_eq!(out.additional_a("N1.node.dc1.consul."), Some("10.0.0.1"));
    assert_eq!(out.size, Some(99));
    assert!(parse_dig(";; communications error to 127.0.0.1#8600: timed out\n").is_none());
}
