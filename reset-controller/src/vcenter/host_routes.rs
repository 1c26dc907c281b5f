//! What a session learnt about the ESXi hosts that /guestFile URLs name: the address to use
//! and the client pinned to each host's thumbprint. Kept in the [`super::client::Transport`]
//! (so every clone of a session shares it); filled and read by [`super::transfer`] only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::pinned::Mismatch;

/// What was learnt about one host named in transfer URLs.
#[derive(Debug, Clone)]
pub(super) struct Route {
    /// The management IP to use instead of the name, if the host has exactly one.
    pub(super) ip: Option<IpAddr>,
    /// A client pinned to the host's thumbprint, if one is used.
    pub(super) pinned: Option<(reqwest::Client, Mismatch)>,
}

/// Routes to ESXi hosts by the `host:port` vCenter names, kept for the session.
#[derive(Debug, Clone, Default)]
pub struct HostClients(Arc<Mutex<HashMap<String, Route>>>);

impl HostClients {
    pub(super) fn get(&self, key: &str) -> Option<Route> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub(super) fn put(&self, key: String, route: Route) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, route);
    }
}
