//! One run per network namespace. The agent binds an abstract unix socket whose name is scoped
//! to the network namespace by the kernel and released when the process dies (even by
//! SIGKILL), so there is no lock file to go stale. Whoever connects gets the run's live status
//! as JSON: a second run learns who holds it, `reset-agent status` prints it.
use std::{
    io::{Read, Write},
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    time::Duration,
};

use crate::lifecycle::status::{self, Shared, Status};

const NAME: &[u8] = b"reset-peer-agent";

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another reset-agent run is active in this network namespace ({holder}); wait for it to end or stop it (SIGTERM), then retry"
    )]
    Busy { holder: String },
    #[error("cannot create the run lock: {0}")]
    Io(#[source] std::io::Error),
}

/// Held for the life of a run; answers with its status.
pub struct Instance {
    _listener: std::thread::JoinHandle<()>,
}

impl Instance {
    pub fn acquire(status: Shared) -> Result<Instance, InstanceError> {
        let addr = SocketAddr::from_abstract_name(NAME).map_err(InstanceError::Io)?;
        let listener = match UnixListener::bind_addr(&addr) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(InstanceError::Busy { holder: holder() });
            }
            Err(e) => return Err(InstanceError::Io(e)),
        };
        let handle = std::thread::Builder::new()
            .name("instance".into())
            .spawn(move || {
                for mut conn in listener.incoming().flatten() {
                    let _ = conn.write_all(status::json(&status).as_bytes());
                }
            })
            .map_err(InstanceError::Io)?;
        Ok(Instance { _listener: handle })
    }
}

/// The status of the run holding the lock, if one does (and answers).
pub fn status() -> Option<Status> {
    let addr = SocketAddr::from_abstract_name(NAME).ok()?;
    let s = UnixStream::connect_addr(&addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut out = String::new();
    s.take(64 * 1024).read_to_string(&mut out).ok()?;
    serde_json::from_str(&out).ok()
}

/// Who holds the lock, as it describes itself.
pub fn holder() -> String {
    status().map_or_else(|| "holder did not answer".into(), |s| s.holder)
}

/// Whether a run is active in this network namespace: who holds it.
pub fn active() -> Option<String> {
    let addr = SocketAddr::from_abstract_name(NAME).ok()?;
    UnixStream::connect_addr(&addr).ok().map(|_| holder())
}
