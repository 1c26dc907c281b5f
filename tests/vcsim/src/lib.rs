//! reset-vcsim: a test fixture that speaks the vim25 SOAP subset reset-controller
//! uses (session, inventory lookup, guest operations, /guestFile transfers) and
//! backs each VM with a network namespace: guest programs run in it through
//! `ip netns exec NETNS bash -c`, as VMware Tools runs them through bash.
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
pub mod model;
pub mod objects;
pub mod process;
pub mod server;
pub mod soap;
pub mod xml;

pub use model::{Sim, SimConfig, VmSpec};
pub use server::{SelfSigned, serve};
