//! Discovery rounds: ask for the members every interval and give the core
//! each new list, never an empty one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_channel::Receiver;
use futures_lite::FutureExt;

use super::shared::Shared;
use crate::discovery::{recognise_self, Discovery};
use crate::runtime::Runtime;

/// A node's discovery and what it last applied.
pub(super) struct Watch {
    pub(super) discovery: Arc<dyn Discovery>,
    pub(super) interval: Duration,
    /// The listen address: how this node finds itself in an answer.
    pub(super) listen: std::net::SocketAddr,
    /// The last good member list, sorted.
    pub(super) last: Vec<String>,
}

pub(super) async fn discovery_loop<R: Runtime>(
    shared: Arc<Shared<R>>,
    mut w: Watch,
    stop: Receiver<()>,
) {
    loop {
        let round = async {
            shared.rt.sleep(w.interval).await;
            // A round that outlasts the interval is abandoned, so a hung
            // resolver cannot stop later rounds.
            Some(crate::runtime::timeout(&shared.rt, w.interval, w.discovery.members()).await)
        }
        .or(async {
            let _ = stop.recv().await;
            None
        })
        .await;
        let Some(answer) = round else {
            return;
        };
        let c = &shared.discovery;
        c.rounds.fetch_add(1, Ordering::Relaxed);
        if !matches!(&answer, Some(Ok(m)) if !m.is_empty()) {
            c.failures.fetch_add(1, Ordering::Relaxed);
        }
        let members = match answer {
            Some(Ok(m)) if !m.is_empty() => m,
            Some(Ok(_)) => {
                tracing::warn!(
                    kept = w.last.len(),
                    "discovery found no members; keeping the last good list"
                );
                continue;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, kept = w.last.len(), "discovery failed; keeping the last good list");
                continue;
            }
            None => {
                tracing::warn!(
                    kept = w.last.len(),
                    "discovery did not answer within the interval; keeping the last good list"
                );
                continue;
            }
        };
        apply(&shared, &mut w, members);
    }
}

/// Gives the core a changed member list, renaming this node first if the
/// answers know it by another name.
fn apply<R: Runtime>(shared: &Arc<Shared<R>>, w: &mut Watch, members: Vec<String>) {
    let listen = w.listen;
    let last = &mut w.last;
    shared.input(|n, now| {
        let self_addr = n.config().self_addr.clone();
        let (members, me) = recognise_self(members, &self_addr, listen);
        if members == *last {
            return;
        }
        if let Some(me) = me.filter(|m| *m != self_addr) {
            tracing::info!(from = %self_addr, to = %me, "this node is known by another name");
            n.set_self_addr(me);
        }
        let added: Vec<&String> = members.iter().filter(|m| !last.contains(m)).collect();
        let removed: Vec<&String> = last.iter().filter(|m| !members.contains(m)).collect();
        tracing::info!(?added, ?removed, members = members.len(), "members changed");
        n.set_peers(now, &members);
        *last = members;
        shared.discovery.changes.fetch_add(1, Ordering::Relaxed);
    });
}
