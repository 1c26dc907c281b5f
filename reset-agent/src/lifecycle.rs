//! One fault window from start to verified cleanup: check, lock, ramp, install, window, drain,
//! remove, verify, ramp, report. Shutdown is a value (`watch<Phase>`) passed down, not a global.
//!
//! Ending the window: first stop selecting and remove the redirect, then let held connections
//! reach their reset (at most RESET_TIMEOUT later), then detach the observer and write the
//! report. On abort (SIGINT/SIGTERM) held connections are reset at once.
use std::{
    path::PathBuf,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
    time::{Instant, sleep},
};
use tracing::{info, warn};

use crate::{
    cleanup,
    config::{Config, ConfigError, ModeRequest},
    ebpf::{self, Globals, Observer},
    host,
    instance::{Instance, InstanceError},
    lost::LostFlows,
    metrics::Metrics,
    nft::{self, NftError, Redirect, RedirectSpec, Steering},
    proxy::{self, Phase, ProxyConfig, Stats, UserspaceSelector, Verdict},
    report::{Percentiles, Report, now_rfc3339},
};

/// The skb mark the tc program gives selected SYNs and the nft rule matches ("rstp").
pub const MARK: u32 = 0x7273_7470;
/// Extra time past duration + ramps + reset timeout after which the agent exits on its own.
const DEADLINE_GRACE: Duration = Duration::from_secs(30);
/// Longest wait for held connections after the window, beyond RESET_TIMEOUT.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

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
    #[error("installing the nftables redirect failed: {0}")]
    Nft(#[from] NftError),
    #[error("cannot serve metrics on {addr}: {source}; choose another METRICS_LISTEN")]
    MetricsListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up signal handlers failed: {0}")]
    Signals(#[source] std::io::Error),
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

/// Checks done before anything is installed. Nothing here changes the host.
pub fn check_environment(cfg: &Config) -> Result<(), RunError> {
    let caps = host::effective_caps();
    if !host::has_cap(caps, host::CAP_NET_ADMIN) {
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

fn bind_proxy(port: u16) -> Result<Vec<std::net::TcpListener>, RunError> {
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

/// Why kernel mode cannot be used here, if it cannot (checked before trying to load).
fn kernel_mode_blocker() -> Option<String> {
    if !host::can_load_bpf(host::effective_caps()) {
        return Some("the agent lacks CAP_BPF/CAP_SYS_ADMIN".into());
    }
    None
}

pub struct Outcome {
    pub report: Report,
}

/// Runs one fault window. Returns the report (also written to `report_path`).
pub async fn run(
    cfg: Config,
    report_path: Option<PathBuf>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> Result<Outcome, RunError> {
    check_environment(&cfg)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let _instance = Instance::acquire(format!(
        "pid {}, started {}, TARGET_SERVICE_PORT {}, PROXY_PORT {}",
        std::process::id(),
        now_rfc3339(),
        cfg.target_port,
        cfg.proxy_port
    ))?;
    let stale = cleanup::remove_stale(&cfg.interface);
    if !stale.is_empty() {
        warn!(removed = ?stale, "removed leftovers of an earlier run");
    }
    let listeners = bind_proxy(cfg.proxy_port)?;
    let metrics_listener = match metrics_addr {
        Some(addr) => Some(
            crate::metrics::bind(addr)
                .await
                .map_err(|source| RunError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    spawn_deadline(&cfg);

    let mut report = Report::new(&cfg);
    let mut aborted = false;

    // Ramp before the window: nothing installed yet.
    if !cfg.ramp.is_zero() {
        info!(seconds = cfg.ramp.as_secs(), "ramp before the window");
        tokio::select! {
            _ = sleep(cfg.ramp) => {}
            _ = sigint.recv() => aborted = true,
            _ = sigterm.recv() => aborted = true,
        }
    }
    if aborted {
        report.aborted = true;
        report.started_at = now_rfc3339();
        report.ended_at = report.started_at.clone();
        report.cleanup = crate::report::CleanupReport {
            nft_table_removed: true,
            ebpf_detached: true,
            verified: verify(&cfg),
        };
        finish(&mut report, report_path.as_deref());
        return Ok(Outcome { report });
    }

    // Observer first (window closed), then the steering rule, then open the window.
    let mut observer = match cfg.mode {
        ModeRequest::Userspace => {
            report.mode_reason = Some("MODE=userspace was requested".into());
            None
        }
        ModeRequest::Kernel | ModeRequest::Auto => {
            let attempt = match kernel_mode_blocker() {
                Some(why) => Err(why),
                None => Observer::attach(
                    &cfg.interface,
                    Globals {
                        target_port: cfg.target_port,
                        toxicity_ppm: cfg.toxicity.ppm(),
                        selection: cfg.selection,
                        mark: MARK,
                        hash_key: (random_u64(), random_u64()),
                    },
                    &listeners,
                )
                .map_err(|e| format!("{e:#}")),
            };
            match attempt {
                Ok(o) => Some(o),
                Err(why) if cfg.mode == ModeRequest::Auto => {
                    warn!(reason = %why, "eBPF unavailable: falling back to userspace mode (counts are not kernel-observed)");
                    report.mode_reason = Some(format!("eBPF unavailable: {why}"));
                    None
                }
                Err(why) => return Err(RunError::KernelUnavailable(why)),
            }
        }
    };
    let kernel = observer.is_some();
    if !kernel {
        report.mode = "userspace";
        report.counts_kernel_observed = false;
    }

    let spec = RedirectSpec {
        interface: cfg.interface.clone(),
        target_port: cfg.target_port,
        proxy_port: cfg.proxy_port,
        mark: kernel.then_some(MARK),
    };
    let redirect = match Redirect::install(&spec, nft::hints()) {
        Ok(r) => r,
        Err(e) => {
            if let Some(o) = observer.take() {
                o.detach().await;
            }
            return Err(e.into());
        }
    };
    report.nft_table_owned = redirect.owned;
    report.steering = Some(redirect.steering);
    for why in &redirect.fallbacks {
        warn!(%why, "nftables fallback");
    }
    report.steering_fallbacks = redirect.fallbacks.clone();
    if redirect.steering == Steering::Redirect {
        let firewalls = nft::dropping_input_chains().unwrap_or_default();
        if !firewalls.is_empty() {
            warn!(chains = ?firewalls, proxy_port = cfg.proxy_port, "steering by NAT redirect rewrites the destination port to PROXY_PORT; a guest firewall input chain with policy drop may drop it unless it accepts PROXY_PORT");
        }
    }

    let stats = Arc::new(Stats::default());
    let metrics = metrics_listener.map(|l| {
        let host = nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        let m = Metrics::new(&host, cfg.target_port, cfg.reset_timeout);
        let _ = stats.metrics.set(m.clone());
        let server = tokio::spawn(crate::metrics::serve(l, m.clone()));
        (m, server)
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let verdict = match &observer {
        Some(o) => Verdict::Kernel(o.flows()),
        None => Verdict::Userspace(Arc::new(UserspaceSelector::new(
            cfg.selection,
            cfg.toxicity.ppm(),
            seed(),
        ))),
    };
    let proxy_cfg = Arc::new(ProxyConfig {
        target_port: cfg.target_port,
        reset_timeout: cfg.reset_timeout,
        stream: cfg.stream,
        verdict_is_kernel: kernel,
    });
    let proxy_task = tokio::spawn(proxy::run(
        listeners,
        proxy_cfg,
        verdict,
        stats.clone(),
        phase_rx,
    ));

    if let Some(o) = observer.as_mut()
        && let Err(e) = o.set_window(true)
    {
        report
            .errors
            .push(format!("opening the window failed: {e:#}"));
    }
    report.started_at = now_rfc3339();
    info!(
        mode = report.mode,
        toxicity = %cfg.toxicity,
        reset_timeout_ms = cfg.reset_timeout.as_millis() as u64,
        seconds = cfg.duration.as_secs(),
        "fault active"
    );

    let window_end = Instant::now() + cfg.duration;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    let mut lost = LostFlows::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(window_end) => break,
            _ = sigint.recv() => { aborted = true; break; }
            _ = sigterm.recv() => { aborted = true; break; }
            _ = progress.tick() => log_progress(observer.as_ref(), &stats, window_end),
            _ = refresh.tick() => {
                update_metrics(metrics.as_ref().map(|m| &m.0), observer.as_ref(), &stats, true);
                warn_lost(&mut lost, observer.as_ref(), &stats);
            }
        }
    }

    // 1. Stop selecting new connections. Kernel mode: the eBPF window closes and nothing new is
    //    marked; the rule stays until the table goes, so a retransmitted SYN of a flow already
    //    steered still reaches the proxy. Userspace mode: the rule itself stops steering.
    if let Some(o) = observer.as_mut()
        && let Err(e) = o.set_window(false)
    {
        report
            .errors
            .push(format!("closing the window failed: {e:#}"));
    }
    report.ended_at = now_rfc3339();
    let mut redirect = redirect;
    if !kernel {
        match redirect.stop_steering() {
            Ok(()) => info!("window closed: no new connections are steered to the proxy"),
            Err(e) => report
                .errors
                .push(format!("stopping the steering rule failed: {e:#}")),
        }
    } else {
        info!("window closed: no new flow is selected");
    }
    // 2. Let held connections reach their reset (or reset them now on abort).
    if aborted {
        let _ = phase_tx.send(Phase::Abort);
    } else {
        let drain_end = Instant::now() + cfg.reset_timeout + DRAIN_GRACE;
        while stats.held.load(Relaxed) > 0 && Instant::now() < drain_end {
            tokio::select! {
                _ = sleep(Duration::from_millis(5)) => {}
                _ = sigint.recv() => { aborted = true; break; }
                _ = sigterm.recv() => { aborted = true; break; }
            }
        }
        let _ = phase_tx.send(Phase::Abort);
    }
    match tokio::time::timeout(Duration::from_secs(5), proxy_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => report.errors.push(format!("proxy listener failed: {e}")),
        Ok(Err(e)) => report.errors.push(format!("proxy task failed: {e}")),
        Err(_) => report.errors.push("proxy did not stop within 5 s".into()),
    }

    // 3. Remove the table, read the kernel's view, then detach.
    match redirect.remove() {
        Ok(()) => {
            info!("nftables table removed");
            report.cleanup.nft_table_removed = true;
        }
        Err(e) => report
            .errors
            .push(format!("removing the nftables table failed: {e:#}")),
    }
    report.aborted = aborted;
    fill_from_stats(&mut report, &stats);
    if let Some(o) = observer.take() {
        match o.counters() {
            Ok(c) => {
                report.flows_seen = c.flows_seen;
                report.flows_selected = c.flows_selected;
                report.resets_observed = c.resets_observed;
                report.syn_retransmits = c.syn_retransmits;
                report.resets_other = c.resets_other;
                report.syns_outside_window = c.syns_outside_window;
                report.flows_map_full = c.map_full;
            }
            Err(e) => report
                .errors
                .push(format!("reading kernel counters failed: {e:#}")),
        }
        if let Some(p) = Percentiles::of(o.flows().reset_delays_ns(), 1e-6) {
            report.reset_delay_ms = p;
        }
        report.ebpf_log_records = o.log_records();
        report.cleanup.ebpf_detached = o.detach().await;
    } else {
        report.flows_seen = stats.accepted.load(Relaxed);
        report.flows_selected = stats.selected.load(Relaxed);
        report.resets_observed = report.resets_issued;
        report.reset_delay_ms = report.reset_delay_userspace_ms;
        report.cleanup.ebpf_detached = true;
    }
    report.cleanup.verified = verify(&cfg);

    if let Some((m, server)) = &metrics {
        m.update(crate::metrics::Snapshot {
            flows_seen: report.flows_seen,
            flows_selected: report.flows_selected,
            resets_observed: report.resets_observed,
            proxy_accepted: report.proxy_accepted,
            resets_issued: report.resets_issued,
            held: 0,
            window_open: false,
        });
        // Final values stay scrapeable during the ramp after the window.
        if aborted || cfg.ramp.is_zero() {
            server.abort();
        }
    }

    // Ramp after the window (skipped on abort).
    if !aborted && !cfg.ramp.is_zero() {
        info!(seconds = cfg.ramp.as_secs(), "ramp after the window");
        tokio::select! {
            _ = sleep(cfg.ramp) => {}
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    }
    finish(&mut report, report_path.as_deref());
    Ok(Outcome { report })
}

fn update_metrics(
    metrics: Option<&Metrics>,
    observer: Option<&Observer>,
    stats: &Stats,
    window_open: bool,
) {
    let Some(m) = metrics else { return };
    let held = stats.held.load(Relaxed);
    let (flows_seen, flows_selected, resets_observed) =
        match observer.and_then(|o| o.counters().ok()) {
            Some(c) => (c.flows_seen, c.flows_selected, c.resets_observed),
            None => {
                let issued = stats.resets_issued.load(Relaxed);
                (
                    stats.accepted.load(Relaxed),
                    stats.selected.load(Relaxed),
                    issued,
                )
            }
        };
    m.update(crate::metrics::Snapshot {
        flows_seen,
        flows_selected,
        resets_observed,
        proxy_accepted: stats.accepted.load(Relaxed),
        resets_issued: stats.resets_issued.load(Relaxed),
        held,
        window_open,
    });
}

/// Kernel mode: warns, while the window is open, about selected flows the proxy never got.
fn warn_lost(lost: &mut LostFlows, observer: Option<&Observer>, stats: &Stats) {
    let Some(c) = observer.and_then(|o| o.counters().ok()) else {
        return;
    };
    let accepted = stats.accepted.load(Relaxed);
    if let Some(n) = lost.observe(std::time::Instant::now(), c.flows_selected, accepted) {
        warn!(
            lost = n,
            selected = c.flows_selected,
            accepted,
            "lost flows: the kernel selected flows more than {} s ago that the proxy never \
             accepted; something between the nftables rule and the proxy drops them (a guest \
             firewall?); run `reset-agent preflight` with the same settings",
            crate::lost::GRACE.as_secs()
        );
    }
}

fn fill_from_stats(report: &mut Report, stats: &Stats) {
    report.proxy_accepted = stats.accepted.load(Relaxed);
    report.resets_issued = stats.resets_issued.load(Relaxed);
    report.proxy_unconfirmed = stats.unconfirmed.load(Relaxed);
    report.proxy_refused_direct = stats.refused_direct.load(Relaxed);
    report.upstream_failures = stats.upstream_failures.load(Relaxed);
    report.callers_gone_early = stats.caller_gone.load(Relaxed);
    let delays = stats
        .delays_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(p) = Percentiles::of(delays, 1e-3) {
        report.reset_delay_userspace_ms = p;
    }
}

fn finish(report: &mut Report, path: Option<&std::path::Path>) {
    report.check_consistency();
    if let Some(path) = path
        && let Err(e) = report.write(path)
    {
        warn!(path = %path.display(), error = %e, "could not write the report");
    }
}

/// Table gone and none of our programs attached.
fn verify(cfg: &Config) -> bool {
    let table_gone = matches!(nft::table_exists(), Ok(false));
    let progs_gone = ebpf::attached_programs(&cfg.interface).is_empty();
    table_gone && progs_gone
}

fn log_progress(observer: Option<&Observer>, stats: &Stats, window_end: Instant) {
    let left = window_end
        .saturating_duration_since(Instant::now())
        .as_secs();
    match observer.and_then(|o| o.counters().ok()) {
        Some(c) => info!(
            seconds_left = left,
            flows_seen = c.flows_seen,
            flows_selected = c.flows_selected,
            resets_observed = c.resets_observed,
            held = stats.held.load(Relaxed),
            "progress"
        ),
        None => info!(
            seconds_left = left,
            accepted = stats.accepted.load(Relaxed),
            selected = stats.selected.load(Relaxed),
            resets_issued = stats.resets_issued.load(Relaxed),
            held = stats.held.load(Relaxed),
            "progress"
        ),
    }
}

/// Backstop: if the run has not ended by duration + ramps + reset timeout + grace, exit. The
/// kernel then removes the owned table and the TCX links with the process.
fn spawn_deadline(cfg: &Config) {
    let limit = cfg.duration + cfg.ramp * 2 + cfg.reset_timeout + DRAIN_GRACE + DEADLINE_GRACE;
    let _ = std::thread::Builder::new()
        .name("deadline".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!(
                "reset-agent: deadline of {} s exceeded; exiting so the kernel removes the fault",
                limit.as_secs()
            );
            std::process::exit(4);
        });
}

fn seed() -> u64 {
    random_u64()
}

/// 64 random bits from the kernel (the selection key must not be guessable from the outside,
/// or a caller could pick ports that are never reset). Falls back to time and pid.
fn random_u64() -> u64 {
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
