//! The leader's reconciliation of the LAN pool into the catalog (Consul's
//! `leaderLoop` reconcile): on every membership event, on gaining
//! leadership and every [`RECONCILE_INTERVAL`] anyway, the leader asks core
//! which registrations the pool calls for (`serfHealth` passing for alive
//! members, critical for failed ones, deregistration for those that left
//! or were reaped) and writes them through Raft.

use crate::gossip::Gossip;
use crate::state::Node;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tribune_core::command::CommandResult;
use tribune_core::gossip::SerfEvent;

/// Consul's `reconcile_interval`.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// How often a follower looks whether it became the leader.
const LEADERSHIP_POLL: Duration = Duration::from_millis(250);

pub async fn run(node: Arc<Node>, gossip: Gossip) {
    let mut events = gossip.subscribe();
    // Reconcile at once when this server becomes the leader.
    let mut was_leading = false;
    let mut due = tokio::time::Instant::now();
    let mut dirty = true;
    loop {
        let leading = node.is_leading();
        if leading && (!was_leading || dirty || tokio::time::Instant::now() >= due) {
            dirty = !reconcile_once(&node, &gossip).await;
            due = tokio::time::Instant::now() + RECONCILE_INTERVAL;
        }
        was_leading = leading;
        tokio::select! {
            _ = tokio::time::sleep(LEADERSHIP_POLL) => {}
            event = events.recv() => match event {
                Ok(SerfEvent::User(_) | SerfEvent::Query(_)) => {}
                Ok(_) | Err(RecvError::Lagged(_)) => dirty = true,
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// One round; `false` when a write failed (the next round retries).
async fn reconcile_once(node: &Node, gossip: &Gossip) -> bool {
    let members = gossip.members().await;
    let (datacenter, local) = (&node.identity.datacenter, &node.identity.node_name);
    let commands = node.read(|inner| {
        tribune_core::reconcile::reconcile(&members, &inner.fsm.catalog, datacenter, local)
    });
    let mut ok = true;
    for command in commands {
        let what = describe(&command);
        match node.write(command).await {
            Ok(CommandResult::Failed(e)) => {
                ok = false;
                crate::log::warn(&format!("leader: reconcile failed: {e}: {what}"));
            }
            Err(e) => {
                ok = false;
                crate::log::warn(&format!("leader: reconcile failed: {e:?}"));
            }
            Ok(_) => crate::log::debug(&format!("leader: reconciled {what}")),
        }
    }
    ok
}

fn describe(command: &tribune_core::Command) -> String {
    use tribune_core::Command;
    match command {
        Command::Register(reg) => {
            let status = reg
                .checks
                .iter()
                .map(|c| c.status.to_string())
                .collect::<Vec<_>>()
                .join(",");
            format!("node {:?} serfHealth {status}", reg.node.name)
        }
        Command::Deregister { node, .. } => format!("deregistered node {node:?}"),
        other => format!("{other:?}"),
    }
}
