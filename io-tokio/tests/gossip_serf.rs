//! The LAN gossip pool against the real `serf` binary (HashiCorp serf,
//! Debian's `serf` package): a serf agent joins a tribune server and a
//! tribune server joins a serf agent, each sees the other alive with its
//! tags, and each sees the other failed after a SIGKILL. Also: tribune
//! servers see each other in `/v1/agent/members`.
//!
//! Without a `serf` binary the serf tests print a notice and pass, unless
//! `CI` is set: then they fail, so CI cannot skip them silently.

mod support;

use std::process::Command;
use support::cluster::Cluster;
use support::serf::{
    assert_failures_detected, assert_mutually_alive, serf_binary, tribune_status, SerfAgent,
    JOIN_LIMIT,
};
use support::{free_port, free_udp_tcp_port, wait_for};

#[test]
fn serf_agent_joins_a_tribune_server() {
    let Some(bin) = serf_binary() else { return };
    let mut cluster = Cluster::start(1, &[]);
    cluster.leader();
    let mut serf = SerfAgent::start(bin, "serfnode");
    let lan = format!("127.0.0.1:{}", cluster.servers[0].lan_port);
    let out = serf.run(&["join", &lan]);
    assert!(out.status.success(), "serf join: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Successfully joined cluster"));
    assert_mutually_alive(&cluster, &serf);
    assert_failures_detected(&mut cluster, &mut serf, &[]);
}

#[test]
fn tribune_server_retry_joins_a_serf_agent() {
    let Some(bin) = serf_binary() else { return };
    let mut serf = SerfAgent::start(bin, "serfnode");
    let mut cluster = Cluster::start(1, &[&format!("-retry-join={}", serf.addr())]);
    cluster.leader();
    assert_mutually_alive(&cluster, &serf);
    assert_failures_detected(&mut cluster, &mut serf, &[]);
}

#[test]
fn tribune_join_command_joins_a_serf_agent() {
    let Some(bin) = serf_binary() else { return };
    let serf = SerfAgent::start(bin, "serfnode");
    let cluster = Cluster::start(1, &[]);
    cluster.leader();
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .arg("join")
        .arg(format!(
            "-http-addr=127.0.0.1:{}",
            cluster.servers[0].client.port
        ))
        .arg(serf.addr())
        .output()
        .expect("run tribune join");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Successfully joined cluster by contacting 1 nodes."
    );
    assert_mutually_alive(&cluster, &serf);
    // A join nobody answers fails.
    let dead = format!("127.0.0.1:{}", free_port());
    let resp = cluster.servers[0]
        .client
        .put(&format!("/v1/agent/join/{dead}"), "");
    assert_eq!(resp.status, 500, "{}", resp.text());
}

#[test]
fn tribune_servers_list_each_other() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    let names: Vec<String> = cluster.servers.iter().map(|s| s.name.clone()).collect();
    for server in &cluster.servers {
        wait_for(
            JOIN_LIMIT,
            "every server alive in /v1/agent/members",
            || {
                let resp = server
                    .client
                    .try_request("GET", "/v1/agent/members", None, &[])
                    .ok()?;
                let members = resp.json();
                let alive: Vec<&str> = members
                    .as_array()?
                    .iter()
                    .filter(|m| m["Status"] == 1 && m["Tags"]["role"] == "consul")
                    .filter_map(|m| m["Name"].as_str())
                    .collect();
                names
                    .iter()
                    .all(|n| alive.contains(&n.as_str()))
                    .then_some(())
            },
        );
    }
}

#[test]
fn graceful_leave_shows_left_to_serf() {
    let Some(bin) = serf_binary() else { return };
    let serf = SerfAgent::start(bin, "serfnode");
    // Two servers: the last one cannot leave the Raft configuration.
    let mut cluster = Cluster::start(2, &[&format!("-retry-join={}", serf.addr())]);
    cluster.leader();
    assert_mutually_alive(&cluster, &serf);
    let name = cluster.servers[1].name.clone();
    wait_for(JOIN_LIMIT, "serf to see the second server", || {
        serf.status_of(&name).filter(|(s, _)| s == "alive")
    });
    let out = Command::new(env!("CARGO_BIN_EXE_tribune"))
        .arg("leave")
        .arg(format!(
            "-http-addr=127.0.0.1:{}",
            cluster.servers[1].client.port
        ))
        .output()
        .expect("run tribune leave");
    assert!(out.status.success(), "{out:?}");
    // A graceful leave is `left` at once, never `failed`.
    wait_for(JOIN_LIMIT, "serf to mark the tribune server left", || {
        let (status, _) = serf.status_of(&name)?;
        assert_ne!(status, "failed");
        (status == "left").then_some(())
    });
    wait_for(JOIN_LIMIT, "the server to exit", || {
        cluster.servers[1].exited().then_some(())
    });
    // The other server saw the leave too (Status 3).
    let client = cluster.servers[0].client.clone();
    wait_for(JOIN_LIMIT, "the other server to mark it left", || {
        (tribune_status(&client, &name) == Some(3)).then_some(())
    });
}

/// tribune fills packets by their compressed size, so a packet of
/// Consul-tagged alive messages holds about twice what fits in memberlist's
/// 1,400-byte buffer uncompressed. A real serf agent must take such a
/// packet: here 16 members' alive messages (about 2.7 KB as a compound) are
/// sealed by tribune's codec into one compressed packet under 1,400 bytes,
/// sent to serf over UDP, and serf lists every one of them.
#[test]
fn serf_takes_a_compressed_packet_fuller_than_its_buffer() {
    use tribune_core::gossip::codec::{encode_compound, encode_message, encode_packet, Outbound};
    use tribune_core::gossip::message::{addr_bytes, Alive, Message};
    use tribune_core::gossip::serf::encode_tags;
    use tribune_core::gossip::sim::{consul_client_tags, VSN};
    use tribune_core::rng::Rng;

    let Some(bin) = serf_binary() else { return };
    let serf = SerfAgent::start(bin, "serfnode");
    let msgs: Vec<Message> = (0..16)
        .map(|i| {
            Message::Alive(Alive {
                incarnation: 1,
                node: format!("packed-{i}"),
                addr: addr_bytes("127.0.0.1".parse().unwrap()),
                // Nothing listens there: serf will suspect them later,
                // after the check below.
                port: free_udp_tcp_port(&[]),
                meta: encode_tags(&consul_client_tags(i)).expect("tags"),
                vsn: VSN,
            })
        })
        .collect();
    let parts: Vec<Vec<u8>> = msgs.iter().map(encode_message).collect();
    let raw = encode_compound(&parts).expect("compound").len();
    let packet =
        encode_packet(&msgs, &Outbound::new("", None), &mut Rng::from_seed(7)).expect("packet");
    assert!(raw > 2400, "the compound is {raw} bytes");
    assert!(packet.len() <= 1400, "the packet is {} bytes", packet.len());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    socket.send_to(&packet, serf.addr()).expect("send");
    wait_for(JOIN_LIMIT, "serf to list all 16 packed members", || {
        let members = serf.members();
        (0..16)
            .all(|i| {
                members
                    .iter()
                    .any(|(name, _, _)| *name == format!("packed-{i}"))
            })
            .then_some(())
    });
}
