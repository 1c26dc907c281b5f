//! The vim25 SOAP client: the dozen calls the controller needs, hand-written.
//!
//! Layering: `xml` (bounded tree) -> `soap` (envelopes, faults) -> `versions` (which API
//! version to speak) -> `client` (HTTP, TLS, cookie) -> `session` (with `compat`: refuse
//! servers that cannot run guest operations), `inventory`, `guest_ops` (requests and replies)
//! -> `transfer` (where /guestFile goes, trust by `pinned` thumbprints) -> `guest` (one VM's
//! guest operations and file transfers).

pub mod client;
pub mod compat;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod guest;
pub mod guest_ops;
pub mod inventory;
pub mod pinned;
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
