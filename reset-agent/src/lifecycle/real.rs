//! The real parts: aya programs, the nftables table, the proxy and the requests thread, the
//! run lock and the host checks.
use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

use super::{
    RunError,
    data_path::RealDataPath,
    parts::{BoxFuture, DataPath, Listeners, Observe, Parts, Steer},
    status,
};
use crate::{
    cleanup,
    config::{Config, Unit},
    ebpf::{self, Counters, Globals, Observer},
    host::{self, HostFacts},
    instance::Instance,
    nft::{self, NftError, Redirect, RedirectSpec, Steering},
    proxy::{self, Phase, ProxyConfig, Stats, UserspaceSelector, Verdict},
    requests::Requests,
};

/// The skb mark the tc program gives selected SYNs and the nft rule matches ("rstp").
pub const MARK: u32 = 0x7273_7470;

pub struct RealParts;

impl Observe for Observer {
    fn set_window(&mut self, open: bool) -> Result<(), String> {
        Observer::set_window(self, open).map_err(|e| format!("{e:#}"))
    }
    fn counters(&self) -> Result<Counters, String> {
        Observer::counters(self).map_err(|e| format!("{e:#}"))
    }
    fn flow_delays_ns(&self) -> Vec<u64> {
        self.flows().reset_delays_ns()
    }
    fn log_records(&self) -> u64 {
        Observer::log_records(self)
    }
    fn detach(self: Box<Self>) -> BoxFuture<bool> {
        Box::pin(Observer::detach(*self))
    }
    fn real(&mut self) -> Option<&mut Observer> {
        Some(self)
    }
}

impl Steer for Redirect {
    fn steering(&self) -> Steering {
        self.steering
    }
    fn owned(&self) -> bool {
        self.owned
    }
    fn fallbacks(&self) -> Vec<String> {
        self.fallbacks.clone()
    }
    fn rule_text(&self) -> String {
        self.rule_text.clone()
    }
    fn stop_steering(&mut self) -> Result<(), String> {
        Redirect::stop_steering(self).map_err(|e| format!("{e:#}"))
    }
    fn remove(self: Box<Self>) -> Result<(), String> {
        Redirect::remove(*self).map_err(|e| format!("{e:#}"))
    }
}

impl Parts for RealParts {
    fn check(&self, cfg: &Config, host: &HostFacts) -> Result<(), RunError> {
        if !host::has_cap(host.caps, host::CAP_NET_ADMIN) {
            return Err(RunError::Privilege {
                cap: "CAP_NET_ADMIN",
            });
        }
        if !host::interface_exists(&cfg.interface) {
            return Err(RunError::NoInterface {
                name: cfg.interface.clone(),
                present: host::interfaces().join(", "),
            });
        }
        if let Ok(exe) = std::env::current_exe()
            && let Some(dir) = exe.parent()
            && let Ok(meta) = std::fs::metadata(dir)
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o002 != 0 {
                return Err(RunError::UnsafePath(dir.display().to_string()));
            }
        }
        Ok(())
    }

    fn lock(&self, _cfg: &Config, status: status::Shared) -> Result<Box<dyn Send>, RunError> {
        Ok(Box::new(Instance::acquire(status)?))
    }

    fn remove_stale(&self, cfg: &Config) -> Vec<String> {
        cleanup::remove_stale(&cfg.interface)
    }

    fn bind(&self, cfg: &Config) -> Result<Listeners, RunError> {
        let port = cfg.proxy_port;
        proxy::bind(port).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                RunError::PortInUse {
                    port,
                    owner: host::port_owner(port).unwrap_or_else(|| "owner not visible".into()),
                }
            } else {
                RunError::Listen { port, source }
            }
        })
    }

    fn observe(
        &self,
        cfg: &Config,
        host: &HostFacts,
        listeners: &Listeners,
    ) -> Result<Box<dyn Observe>, String> {
        if !host::can_load_bpf(host.caps) {
            return Err("the agent lacks CAP_BPF/CAP_SYS_ADMIN".into());
        }
        if cfg.unit == Unit::Request {
            host.sock_destroy().map_err(|why| {
                format!("the request unit cannot reset connections it does not proxy: {why}")
            })?;
        }
        let globals = Globals {
            target_port: cfg.target_port,
            toxicity_ppm: cfg.toxicity.ppm(),
            selection: cfg.selection,
            mark: MARK,
            hash_key: (random_u64(), random_u64()),
            unit: cfg.unit,
            stream: cfg.stream,
        };
        Observer::attach(&cfg.interface, globals, listeners, host.tcx())
            .map(|o| Box::new(o) as Box<dyn Observe>)
            .map_err(|e| format!("{e:#}"))
    }

    fn steer(&self, spec: &RedirectSpec, host: &HostFacts) -> Result<Box<dyn Steer>, NftError> {
        let r = Redirect::install(spec, nft::hints(host))?;
        Ok(Box::new(r))
    }

    fn data_path(
        &self,
        cfg: &Config,
        listeners: Listeners,
        observer: Option<&mut (dyn Observe + 'static)>,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Result<Box<dyn DataPath>, RunError> {
        let stats = Arc::new(Stats::default());
        if let Some(m) = metrics {
            let _ = stats.metrics.set(m);
        }
        let real = observer.and_then(|o| o.real());
        let kernel = real.is_some();
        let mut requests = None;
        let verdict = match real {
            Some(o) => {
                if cfg.unit == Unit::Request {
                    let events = o.take_events().ok_or(RunError::KernelUnavailable(
                        "the eBPF object has no EVENTS ring".into(),
                    ))?;
                    requests = Some(
                        Requests::start(events, cfg.reset_timeout).map_err(RunError::Requests)?,
                    );
                }
                Verdict::Kernel(o.flows())
            }
            None => Verdict::Userspace(Arc::new(UserspaceSelector::new(
                cfg.selection,
                cfg.toxicity.ppm(),
                random_u64(),
            ))),
        };
        let proxy_cfg = Arc::new(ProxyConfig {
            target_port: cfg.target_port,
            reset_timeout: cfg.reset_timeout,
            stream: cfg.stream,
            verdict_is_kernel: kernel,
            per_request: !kernel && cfg.unit == Unit::Request,
        });
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let proxy = tokio::spawn(proxy::run(
            listeners,
            proxy_cfg,
            verdict,
            stats.clone(),
            phase_rx,
        ));
        Ok(Box::new(RealDataPath {
            proxy,
            phase,
            stats,
            requests,
        }))
    }

    fn verify(&self, cfg: &Config) -> bool {
        let table_gone = matches!(nft::table_exists(), Ok(false));
        let progs_gone = ebpf::attached_programs(&cfg.interface).is_empty();
        if !table_gone || !progs_gone {
            warn!(
                table_gone,
                progs_gone, "something of the run is still in place"
            );
        }
        table_gone && progs_gone
    }
}

/// 64 random bits from the kernel (the selection key must not be guessable from the outside,
/// or a caller could pick ports that are never reset). Falls back to time and pid.
pub fn random_u64() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}
