//! Answer selection tests against a store built through `Fsm::apply`.

use super::answer::{answer, answer_cached};
use super::cache::ServiceCache;
use super::{Answer, DnsConfig, QType, Question, RData, Rcode};
use crate::catalog::{Check, CheckDefinition, CheckStatus, Node, Registration, Service, Weights};
use crate::command::{Command, CommandResult};
use crate::fsm::{Effects, Fsm};
use crate::rng::Rng;
use std::collections::BTreeSet;

struct Store {
    fsm: Fsm,
    index: u64,
}

impl Store {
    fn new() -> Store {
        Store {
            fsm: Fsm::default(),
            index: 0,
        }
    }

    /// Registers `service` on `node` (address `node_ip`) with one check.
    fn add(
        &mut self,
        node: &str,
        node_ip: &str,
        service: Option<(&str, &str, &[&str], u16)>,
        status: CheckStatus,
    ) {
        let service = service.map(|(name, address, tags, port)| Service {
            node: node.into(),
            id: format!("{name}-{node}"),
            name: name.into(),
            kind: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            address: address.into(),
            tagged_addresses: Default::default(),
            meta: Default::default(),
            port,
            weights: Weights {
                passing: 10,
                warning: 1,
            },
            enable_tag_override: false,
            create_index: 0,
            modify_index: 0,
        });
        let check = Check {
            node: node.into(),
            check_id: format!("chk-{node}"),
            name: "check".into(),
            status,
            notes: String::new(),
            output: String::new(),
            service_id: service.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
            service_name: String::new(),
            service_tags: Vec::new(),
            check_type: String::new(),
            definition: CheckDefinition::default(),
            create_index: 0,
            modify_index: 0,
        };
        let reg = Registration {
            node: Node {
                id: String::new(),
                name: node.into(),
                address: node_ip.into(),
                datacenter: "dc1".into(),
                tagged_addresses: Default::default(),
                meta: [("rack".to_string(), "r1".to_string())]
                    .into_iter()
                    .collect(),
                create_index: 0,
                modify_index: 0,
            },
            skip_node_update: false,
            service,
            checks: vec![check],
        };
        self.index += 1;
        let result = self.fsm.apply(
            self.index,
            &Command::Register(Box::new(reg)),
            &mut Effects::default(),
        );
        assert_eq!(result, CommandResult::Done);
    }

    fn ask(&self, name: &str, qtype: QType, rng: &mut Rng) -> Answer {
        let question = Question {
            name: name.into(),
            qtype,
            answer_limit: None,
        };
        answer(&self.fsm, &DnsConfig::new("dc1"), &question, 7, rng)
    }
}

fn addresses(answer: &Answer) -> BTreeSet<String> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(ip) => Some(ip.to_string()),
            RData::Aaaa(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect()
}

fn web_store() -> Store {
    let mut store = Store::new();
    store.add(
        "n1",
        "10.0.0.1",
        Some(("web", "", &["v1"], 80)),
        CheckStatus::Passing,
    );
    store.add(
        "n2",
        "10.0.0.2",
        Some(("web", "", &["v2"], 80)),
        CheckStatus::Warning,
    );
    store.add(
        "n3",
        "10.0.0.3",
        Some(("web", "", &["v1"], 80)),
        CheckStatus::Critical,
    );
    store.add(
        "n4",
        "10.0.0.4",
        Some(("web", "192.168.0.9", &[], 8080)),
        CheckStatus::Passing,
    );
    store.add(
        "n5",
        "10.0.0.5",
        Some(("db", "", &[], 5432)),
        CheckStatus::Critical,
    );
    store
}

#[test]
fn service_a_leaves_out_critical_instances() {
    let store = web_store();
    let mut rng = Rng::from_seed(1);
    let a = store.ask("web.service.consul.", QType::A, &mut rng);
    assert_eq!(a.rcode, Rcode::NoError);
    assert!(a.authoritative);
    let want: BTreeSet<String> = ["10.0.0.1", "10.0.0.2", "192.168.0.9"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(addresses(&a), want);
    assert!(a
        .answers
        .iter()
        .all(|r| r.ttl == 0 && r.name == "web.service.consul."));
    let tagged = store.ask("V1.web.service.consul", QType::A, &mut rng);
    assert_eq!(
        addresses(&tagged),
        ["10.0.0.1".to_string()].into_iter().collect()
    );
    let mut only_passing = DnsConfig::new("dc1");
    only_passing.only_passing = true;
    let q = Question {
        name: "web.service.consul.".into(),
        qtype: QType::A,
        answer_limit: None,
    };
    let strict = answer(&store.fsm, &only_passing, &q, 7, &mut rng);
    assert!(
        !addresses(&strict).contains("10.0.0.2"),
        "warning left out under only_passing"
    );
}

#[test]
fn negative_answers_carry_the_soa() {
    let store = web_store();
    let mut rng = Rng::from_seed(2);
    for name in [
        "nope.service.consul.",
        "db.service.consul.",
        "web.service.dc9.consul.",
        "x.node.consul.",
        "a.b.c.consul.",
    ] {
        let a = store.ask(name, QType::A, &mut rng);
        assert_eq!(a.rcode, Rcode::NxDomain, "{name}");
        assert!(a.answers.is_empty());
        assert!(
            matches!(a.authority[0].data, RData::Soa { serial: 7, .. }),
            "{name}"
        );
    }
    let nodata = store.ask("n1.node.consul.", QType::Other(15), &mut rng);
    assert_eq!(
        (nodata.rcode, nodata.answers.len(), nodata.authority.len()),
        (Rcode::NoError, 0, 1)
    );
    let refused = store.ask("example.com.", QType::A, &mut rng);
    assert_eq!(
        (refused.rcode, refused.authoritative),
        (Rcode::Refused, false)
    );
}

#[test]
fn srv_targets_and_additional_records() {
    let store = web_store();
    let a = store.ask(
        "_web._tcp.service.consul.",
        QType::Srv,
        &mut Rng::from_seed(3),
    );
    assert_eq!(a.answers.len(), 3);
    let mut targets = BTreeSet::new();
    for record in &a.answers {
        let RData::Srv {
            priority,
            weight,
            port,
            target,
        } = &record.data
        else {
            panic!("not SRV: {record:?}");
        };
        assert_eq!(*priority, 1);
        let want_weight = if target.starts_with("n2.") { 1 } else { 10 };
        assert_eq!(
            *weight, want_weight,
            "{target}: warning instances use the warning weight"
        );
        assert!(*port == 80 || *port == 8080);
        targets.insert(target.clone());
    }
    assert!(targets.contains("n1.node.dc1.consul."));
    assert!(
        targets.contains("c0a80009.addr.dc1.consul."),
        "own IP address → .addr target"
    );
    let extra: BTreeSet<String> = a.additional.iter().map(|r| r.name.clone()).collect();
    assert_eq!(
        extra, targets,
        "each target's address is in the additional section"
    );
}

#[test]
fn nodes_addr_and_ptr() {
    let store = web_store();
    let mut rng = Rng::from_seed(4);
    let node = store.ask("N1.node.dc1.consul.", QType::A, &mut rng);
    assert_eq!(
        addresses(&node),
        ["10.0.0.1".to_string()].into_iter().collect()
    );
    let txt = store.ask("n1.node.consul.", QType::Txt, &mut rng);
    assert_eq!(txt.answers[0].data, RData::Txt(vec!["rack=r1".into()]));
    let addr = store.ask("0a000002.addr.dc1.consul.", QType::A, &mut rng);
    assert_eq!(
        addresses(&addr),
        ["10.0.0.2".to_string()].into_iter().collect()
    );
    let ptr = store.ask("1.0.0.10.in-addr.arpa.", QType::Ptr, &mut rng);
    assert_eq!(
        ptr.answers[0].data,
        RData::Ptr("n1.node.dc1.consul.".into())
    );
    assert_eq!(
        store
            .ask("9.9.9.9.in-addr.arpa.", QType::Ptr, &mut rng)
            .rcode,
        Rcode::NxDomain
    );
    let soa = store.ask("consul.", QType::Soa, &mut rng);
    assert!(matches!(soa.answers[0].data, RData::Soa { .. }));
}

/// A cache kept across queries answers as a fresh one would, and a
/// catalog change (here a check going critical) shows on the next query.
#[test]
fn a_kept_cache_follows_catalog_changes() {
    let mut store = web_store();
    let config = DnsConfig::new("dc1");
    let mut cache = ServiceCache::default();
    for (name, qtype) in [
        ("web.service.consul.", QType::A),
        ("web.service.consul.", QType::Srv),
        ("v1.web.service.consul.", QType::Srv),
        ("nope.service.consul.", QType::A),
    ] {
        let question = Question {
            name: name.into(),
            qtype,
            answer_limit: Some(2),
        };
        for seed in 0..10 {
            let kept = answer_cached(
                &store.fsm,
                &config,
                &question,
                7,
                &mut Rng::from_seed(seed),
                &mut cache,
            );
            let fresh = answer(&store.fsm, &config, &question, 7, &mut Rng::from_seed(seed));
            assert_eq!(kept, fresh, "{name} seed {seed}");
        }
    }
    let question = Question {
        name: "web.service.consul.".into(),
        qtype: QType::A,
        answer_limit: None,
    };
    let before = answer_cached(
        &store.fsm,
        &config,
        &question,
        7,
        &mut Rng::from_seed(1),
        &mut cache,
    );
    assert!(addresses(&before).contains("10.0.0.1"));
    store.add(
        "n1",
        "10.0.0.1",
        Some(("web", "", &["v1"], 80)),
        CheckStatus::Critical,
    );
    let after = answer_cached(
        &store.fsm,
        &config,
        &question,
        7,
        &mut Rng::from_seed(1),
        &mut cache,
    );
    assert!(!addresses(&after).contains("10.0.0.1"), "{after:?}");
}

/// Names outside the domain, and reverse lookups that match nothing, go to
/// the recursors when there are some (and are refused / NXDOMAIN without);
/// RA is set on every answer exactly when recursors are configured.
#[test]
fn recursors_decide_forwarding_and_ra() {
    let store = web_store();
    let mut rng = Rng::from_seed(5);
    let ask = |config: &DnsConfig, name: &str, qtype: QType, rng: &mut Rng| {
        let question = Question {
            name: name.into(),
            qtype,
            answer_limit: None,
        };
        answer(&store.fsm, config, &question, 7, rng)
    };
    let plain = DnsConfig::new("dc1");
    let refused = ask(&plain, "example.org.", QType::A, &mut rng);
    assert_eq!(refused.rcode, Rcode::Refused);
    assert!(!refused.forward && !refused.recursion_available);
    let local = ask(&plain, "web.service.consul.", QType::A, &mut rng);
    assert!(!local.recursion_available);

    let mut recursing = DnsConfig::new("dc1");
    recursing.recursors = vec!["127.0.0.1:53".parse().expect("addr")];
    for (name, qtype) in [
        ("example.org.", QType::A),
        ("Example.ORG", QType::Srv),
        ("9.9.9.9.in-addr.arpa.", QType::Ptr),
        ("10.in-addr.arpa.", QType::Ptr),
    ] {
        let out = ask(&recursing, name, qtype, &mut rng);
        assert!(out.forward && out.recursion_available, "{name}");
    }
    for (name, qtype, rcode) in [
        ("web.service.consul.", QType::A, Rcode::NoError),
        ("nope.service.consul.", QType::A, Rcode::NxDomain),
        ("1.0.0.10.in-addr.arpa.", QType::Ptr, Rcode::NoError),
    ] {
        let out = ask(&recursing, name, qtype, &mut rng);
        assert!(!out.forward && out.recursion_available, "{name}");
        assert_eq!(out.rcode, rcode, "{name}");
    }
}

proptest::proptest! {
    /// Over repeated queries: never an instance with a critical check, every
    /// healthy one reachable, and the order varies.
    #[test]
    fn answers_are_healthy_complete_and_shuffled(
        statuses in proptest::collection::vec(0u8..3, 1..12),
        seed in 0u64..1000,
    ) {
        let mut store = Store::new();
        let mut healthy = BTreeSet::new();
        for (i, s) in statuses.iter().enumerate() {
            let status = [CheckStatus::Passing, CheckStatus::Warning, CheckStatus::Critical][usize::from(*s)];
            let ip = format!("10.1.0.{}", i + 1);
            store.add(&format!("n{i}"), &ip, Some(("api", "", &[], 80)), status);
            if status != CheckStatus::Critical {
                healthy.insert(ip);
            }
        }
        let mut rng = Rng::from_seed(seed);
        let mut orders = BTreeSet::new();
        for _ in 0..20 {
            let a = store.ask("api.service.consul.", QType::A, &mut rng);
            if healthy.is_empty() {
                proptest::prop_assert_eq!(a.rcode, Rcode::NxDomain);
                continue;
            }
            proptest::prop_assert_eq!(&addresses(&a), &healthy);
            orders.insert(format!("{:?}", a.answers));
        }
        if healthy.len() >= 3 {
            proptest::prop_assert!(orders.len() > 1, "the order never changed");
        }
    }
}

proptest::proptest! {
    /// With the plain-UDP cap: at most 3 answers, all healthy, as many as
    /// there are (up to 3), and over repeated queries every healthy instance
    /// shows up, so capping does not starve anyone.
    #[test]
    fn capped_answers_stay_healthy_and_fair(
        statuses in proptest::collection::vec(0u8..3, 1..16),
        seed in 0u64..1000,
        srv in proptest::bool::ANY,
    ) {
        let mut store = Store::new();
        let mut healthy = BTreeSet::new();
        for (i, s) in statuses.iter().enumerate() {
            let status = [CheckStatus::Passing, CheckStatus::Warning, CheckStatus::Critical][usize::from(*s)];
            let ip = format!("10.2.0.{}", i + 1);
            store.add(&format!("n{i}"), &ip, Some(("api", "", &[], 80)), status);
            if status != CheckStatus::Critical {
                healthy.insert(ip);
            }
        }
        let qtype = if srv { QType::Srv } else { QType::A };
        let question = Question { name: "api.service.consul.".into(), qtype, answer_limit: Some(3) };
        let mut rng = Rng::from_seed(seed);
        let mut seen = BTreeSet::new();
        for _ in 0..80 {
            let a = answer(&store.fsm, &DnsConfig::new("dc1"), &question, 7, &mut rng);
            if healthy.is_empty() {
                proptest::prop_assert_eq!(a.rcode, Rcode::NxDomain);
                continue;
            }
            proptest::prop_assert_eq!(a.answers.len(), healthy.len().min(3));
            let got: BTreeSet<String> = if srv { addresses_of_targets(&a) } else { addresses(&a) };
            proptest::prop_assert!(got.is_subset(&healthy), "{got:?} not all healthy");
            seen.extend(got);
        }
        proptest::prop_assert_eq!(seen, healthy);
    }
}

/// The addresses behind SRV answers (from the additional section).
fn addresses_of_targets(answer: &Answer) -> BTreeSet<String> {
    answer
        .additional
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn truncated_says_whether_healthy_instances_were_left_out() {
    let store = web_store();
    let config = DnsConfig::new("dc1");
    let mut rng = Rng::from_seed(11);
    // Three healthy web instances (n1, n2 warning, n4), one critical.
    for (limit, truncated) in [(Some(2), true), (Some(3), false), (None, false)] {
        for qtype in [QType::A, QType::Srv] {
            let q = Question {
                name: "web.service.consul.".into(),
                qtype,
                answer_limit: limit,
            };
            for _ in 0..20 {
                let a = answer(&store.fsm, &config, &q, 7, &mut rng);
                assert_eq!(a.truncated, truncated, "{limit:?} {qtype:?}");
            }
        }
    }
}

#[test]
fn service_ttl_picks_exact_then_longest_prefix_then_star() {
    let mut config = DnsConfig::new("dc1");
    config.service_ttl_secs = 5;
    for (pattern, ttl) in [("web", 30), ("ap*", 7), ("api-*", 9)] {
        config.service_ttls.insert(pattern.to_string(), ttl);
    }
    assert_eq!(config.service_ttl("web"), 30);
    assert_eq!(config.service_ttl("webby"), 5);
    assert_eq!(config.service_ttl("app"), 7);
    assert_eq!(config.service_ttl("api-gw"), 9);
    assert_eq!(config.service_ttl("db"), 5);
    let store = web_store();
    let mut rng = Rng::from_seed(3);
    let q = Question {
        name: "web.service.consul.".into(),
        qtype: QType::Srv,
        answer_limit: None,
    };
    let a = answer(&store.fsm, &config, &q, 7, &mut rng);
    assert!(!a.answers.is_empty() && a.answers.iter().all(|r| r.ttl == 30));
}
