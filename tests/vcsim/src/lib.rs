//! reset-vcsim: a test fixture that speaks the vim25 SOAP subset reset-controller
//! uses (session, inventory lookup, guest operations, /guestFile transfers) and
//! backs each VM with a network namespace: guest programs run in it through
//! `ip netns exec NETNS bash -c`, as VMware Tools runs them through bash.
//!
//! Honest where real servers differ from the simplest answer (see [`profile`]): it publishes
//! vimServiceVersions.xml as vCenter 8.0.3 does (an internal id, then prior versions), or as
//! vCenter 6.7 and 4.1 do, or not at all; it can play a standalone ESXi host; and it can send
//! /guestFile transfers to an "ESXi host" of its own, named by a name that does not resolve,
//! with its own certificate, as a real vCenter does. `--request-log` writes down every request.
//!
//! Simplifications, on purpose: guest programs and file operations run as the
//! simulator's own user whatever the guest user is; ListProcessesInGuest lists only
//! processes started through it; guest paths are this host's paths (the VMs'
//! namespaces share its filesystem); one session cookie, `vmware_soap_session`.
//!
//! It owns only simulated vCenter state. It must not share code with the
//! controller's client (it is held honest by pyvmomi and govmomi instead), must not
//! listen anywhere but the address it is given, and is never shipped.
#![forbid(unsafe_code)]

pub mod dispatch;
pub mod guest;
pub mod host;
pub mod model;
pub mod objects;
pub mod process;
pub mod profile;
pub mod record;
pub mod server;
pub mod soap;
pub mod xml;

pub use model::{Sim, SimConfig, VmSpec};
pub use profile::{EsxHost, Product, Profile};
pub use server::{SelfSigned, serve, serve_esx_host};
