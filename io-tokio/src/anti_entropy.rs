//! Runs anti-entropy full syncs on core's schedule: reads the agent's view
//! and the catalog under the node lock, lets `tribune_core::anti_entropy`
//! compute the repairs, and writes them through the normal write path.

use crate::clock;
use crate::state::Node;
use std::sync::Arc;
use tribune_core::anti_entropy::{diff, SyncSchedule};
use tribune_core::command::CommandResult;
use tribune_core::time::Duration;

pub async fn run(node: Arc<Node>, interval: Duration, seed: u64) {
    let mut schedule = SyncSchedule::new(clock::now(), interval, seed);
    loop {
        let due = clock::to_std(schedule.next());
        tokio::time::sleep_until(due.into()).await;
        // The LAN pool's size scales the interval (the dev agent knows only
        // itself).
        let cluster_size = match node.gossip() {
            Some(gossip) => gossip.members().await.len().max(1),
            None => 1,
        };
        let repairs = match node.own_catalog().await {
            Ok(catalog) => node.read(|inner| diff(&inner.agent, &catalog)),
            Err(e) => {
                crate::log::warn(&format!("agent: anti-entropy: reading the catalog: {e:?}"));
                schedule.failed(clock::now(), cluster_size);
                continue;
            }
        };
        let mut failed = false;
        for command in repairs {
            let what = describe(&command);
            match node.write(command).await {
                Ok(CommandResult::Failed(e)) => {
                    failed = true;
                    crate::log::warn(&format!("agent: anti-entropy: {what} failed: {e}"));
                }
                Err(e) => {
                    failed = true;
                    crate::log::warn(&format!("agent: anti-entropy: {what} failed: {e:?}"));
                }
                Ok(_) => crate::log::info(&format!("agent: anti-entropy: {what}")),
            }
        }
        let now = clock::now();
        if failed {
            schedule.failed(now, cluster_size);
        } else {
            schedule.synced(now, cluster_size);
        }
    }
}

fn describe(command: &tribune_core::command::Command) -> String {
    use tribune_core::command::Command;
    match command {
        Command::Register(reg) => match &reg.service {
            Some(service) => format!("synced service {:?}", service.id),
            None if reg.checks.is_empty() => "synced node info".to_string(),
            None => format!(
                "synced checks {:?}",
                reg.checks
                    .iter()
                    .map(|c| c.check_id.as_str())
                    .collect::<Vec<_>>()
            ),
        },
        Command::Deregister {
            service_id: Some(id),
            ..
        } => format!("deregistered service {id:?} unknown to this agent"),
        Command::Deregister {
            check_id: Some(id), ..
        } => format!("deregistered check {id:?} unknown to this agent"),
        other => format!("{other:?}"),
    }
}
