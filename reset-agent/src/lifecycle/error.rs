//! Why a run could not start or had to stop before its window: what the user must fix.
use crate::{config::ConfigError, instance::InstanceError, nft::NftError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "missing capability {cap}: run reset-agent as root (or grant it with `setcap cap_net_admin,cap_bpf,cap_perfmon+ep`)"
    )]
    Privilege { cap: &'static str },
    #[error(
        "interface {name} does not exist on this host (present: {present}): set NETWORK_INTERFACE to the interface callers arrive on"
    )]
    NoInterface { name: String, present: String },
    #[error("PROXY_PORT {port} is already in use ({owner}): choose another PROXY_PORT")]
    PortInUse { port: u16, owner: String },
    #[error("cannot listen on PROXY_PORT {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing to run from {0}: the directory is writable by every user; copy reset-agent to a directory only its owner can write (mode 0700 or 0755)"
    )]
    UnsafePath(String),
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(
        "MODE=kernel was requested but eBPF cannot be used: {0}; use MODE=auto or MODE=userspace"
    )]
    KernelUnavailable(String),
    #[error("installing the nftables rule failed: {0}")]
    Nft(#[from] NftError),
    #[error("cannot start the request unit's reset thread: {0}")]
    Requests(#[source] std::io::Error),
    #[error("cannot serve metrics on {addr}: {source}; choose another METRICS_LISTEN")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl RunError {
    /// 2 for usage errors, 1 for environment errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            _ => 1,
        }
    }
}
