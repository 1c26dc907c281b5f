//! The vim25 SOAP client: the dozen calls the controller needs, hand-written.
//!
//! Layering, imports pointing one way (a module imports only modules of earlier steps):
//! `xml` (bounded tree) -> `soap` (envelopes, faults) -> `error` -> `versions` (which API
//! version to speak), `collector` (PropertyCollector requests and replies), `service` (the
//! ServiceContent), `guest_ops` (guest requests and replies), `pinned` (clients that trust a
//! thumbprint) -> `host_routes` (what transfers learnt about ESXi hosts) -> `client` (HTTP,
//! TLS, cookie) -> `compat` (refuse servers that cannot run guest operations) -> `session` ->
//! `inventory`, `transfer` (where /guestFile goes) -> `guest` (one VM's guest operations and
//! file transfers).

pub mod client;
pub mod collector;
pub mod compat;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod guest;
pub mod guest_ops;
pub mod host_routes;
pub mod inventory;
pub mod pinned;
pub mod service;
pub mod session;
pub mod soap;
pub mod transfer;
pub mod versions;
pub mod xml;

#[cfg(test)]
mod tests;

pub use client::ConnectOptions;
pub use compat::ServerReport;
pub use error::VcError;
pub use guest::Guest;
pub use guest_ops::{GuestAuth, ProcessInfo, ProgramSpec};
pub use inventory::{GuestManagers, VmInfo};
pub use session::{Reconnect, Session};
