//! One node of the simulator: the state machine, its loader, and the
//! inbound connections whose state the simulator keeps.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::node::{ConnId, Inbound, Node};

use super::SimLoader;

/// A node of the simulator.
pub struct SimNode {
    /// The state machine under test.
    pub node: Node,
    /// Its address in peer lists.
    pub addr: String,
    pub(super) loader: SimLoader,
    /// Its inbound connections whose state the simulator keeps, as the
    /// driver's connection tasks do ([`Sim::detached`]); sorted, so the
    /// order they are visited in does not depend on a hash seed.
    pub(super) inbounds: BTreeMap<ConnId, Inbound>,
}

impl SimNode {
    pub(super) fn new(node: Node, addr: String, loader: SimLoader) -> Self {
        Self {
            node,
            addr,
            loader,
            inbounds: BTreeMap::new(),
        }
    }

    /// The earliest deadline of the node and of its inbound connections.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        (self.inbounds.values())
            .filter_map(Inbound::poll_timeout)
            .chain(self.node.poll_timeout())
            .min()
    }
}
