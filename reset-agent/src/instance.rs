//! One run per network namespace. The agent binds an abstract unix socket whose name is scoped
//! to the network namespace by the kernel and released when the process dies (even by
//! SIGKILL), so there is no lock file to go stale. A second run connects to it to learn who
//! holds it.
use std::{
    io::{Read, Write},
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    time::Duration,
};

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

/// Held for the life of a run; answers "who are you" to a second run.
pub struct Instance {
    _listener: std::thread::JoinHandle<()>,
}

impl Instance {
    pub fn acquire(description: String) -> Result<Instance, InstanceError> {
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
                    let _ = conn.write_all(description.as_bytes());
                }
            })
            .map_err(InstanceError::Io)?;
        Ok(Instance { _listener: handle })
    }
}

/// Who holds the lock, as it describes itself.
pub fn holder() -> String {
    let ask = || -> std::io::Result<String> {
        let addr = SocketAddr::from_abstract_name(NAME)?;
        let s = UnixStream::connect_addr(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut out = String::new();
        s.take(512).read_to_string(&mut out)?;
        Ok(out)
    };
    ask().unwrap_or_else(|_| "holder did not answer".into())
}

/// Whether a run is active in this network namespace.
pub fn active() -> Option<String> {
    let addr = SocketAddr::from_abstract_name(NAME).ok()?;
    UnixStream::connect_addr(&addr).ok().map(|_| holder())
}
