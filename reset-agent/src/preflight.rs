//! `reset-agent preflight`: every check `run` depends on, each printed with pass/fail and the
//! fix, and which data path `run` would take and why. Changes nothing on the host (the BPF
//! check loads the programs without attaching them).
use crate::{
    config::{Config, ModeRequest},
    ebpf, host, instance, nft,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

pub struct Check {
    pub level: Level,
    pub name: &'static str,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(ok: bool, fail_level: Level, name: &'static str, detail: String, fix: &str) -> Check {
    Check {
        level: if ok { Level::Pass } else { fail_level },
        name,
        detail,
        fix: (!ok).then(|| fix.to_owned()),
    }
}

/// What kernel features decide the data path (pure; unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub kernel: (u32, u32),
    pub can_bpf: bool,
    pub bpf_loads: bool,
    /// Request unit only: sockets can be destroyed (CONFIG_INET_DIAG_DESTROY).
    pub sock_destroy: bool,
    pub request_unit: bool,
}

/// The path `run` takes: (mode, attachment, table kind, why).
pub fn decide(
    f: Features,
    requested: ModeRequest,
) -> (&'static str, &'static str, &'static str, String) {
    let table = if f.kernel >= (5, 12) {
        "owner table (removed by the kernel if the agent dies)"
    } else {
        "plain table (removed by cleanup and by the deadline)"
    };
    let attach = if f.kernel >= (6, 6) {
        "TCX links"
    } else {
        "netlink clsact filters (removed by cleanup)"
    };
    let kernel_ok = f.can_bpf && f.bpf_loads && (f.sock_destroy || !f.request_unit);
    match requested {
        ModeRequest::Userspace => (
            "userspace",
            "none",
            table,
            "MODE=userspace requested".into(),
        ),
        _ if kernel_ok => ("kernel", attach, table, "eBPF programs load".into()),
        ModeRequest::Kernel => (
            "none: run will fail",
            "none",
            table,
            "MODE=kernel but eBPF cannot load".into(),
        ),
        ModeRequest::Auto => (
            "userspace",
            "none",
            table,
            if !f.can_bpf {
                "no CAP_BPF/CAP_SYS_ADMIN".into()
            } else if !f.bpf_loads {
                "eBPF programs do not load on this kernel".into()
            } else {
                "the request unit needs CONFIG_INET_DIAG_DESTROY; every connection is proxied"
                    .into()
            },
        ),
    }
}

/// Whether a guest firewall would stop steered connections before the proxy. With tproxy the
/// packet keeps the service's port, which the firewall must already accept for the service to
/// work, so only the NAT fallback (destination rewritten to PROXY_PORT) is at risk.
fn firewall_check(cfg: &Config, tproxy: bool) -> Check {
    let dropping = nft::dropping_input_chains().unwrap_or_default();
    let legacy = nft::legacy_iptables_filters();
    let mut seen = Vec::new();
    if !dropping.is_empty() {
        seen.push(format!(
            "input chains with policy drop: {}",
            dropping.join(", ")
        ));
    }
    if legacy {
        seen.push("legacy iptables filter tables (not visible to nftables)".to_owned());
    }
    if seen.is_empty() {
        return check(
            true,
            Level::Pass,
            "guest_firewall",
            "no input filtering found".into(),
            "",
        );
    }
    let detail = seen.join("; ");
    if tproxy {
        return check(
            true,
            Level::Pass,
            "guest_firewall",
            format!(
                "{detail}; tproxy keeps port {}, which the firewall must accept for the service itself",
                cfg.target_port
            ),
            "",
        );
    }
    check(
        false,
        Level::Warn,
        "guest_firewall",
        detail,
        &format!(
            "the NAT fallback rewrites the destination to PROXY_PORT {}: let the guest firewall \
             accept tcp dport {} on {} for the window (or use a kernel with nft_tproxy), else \
             selected callers time out and the report counts lost flows",
            cfg.proxy_port, cfg.proxy_port, cfg.interface
        ),
    )
}

pub fn run(cfg: &Config, host_facts: &host::HostFacts) -> i32 {
    let mut checks = Vec::new();
    let release = host_facts.release.clone();
    let kv = host_facts.kernel.unwrap_or((0, 0));
    checks.push(check(kv >= (5, 12), Level::Warn, "kernel", release.clone(),
        "kernels older than 5.12 lack owner tables: a killed agent leaves the table until `reset-agent cleanup` or the next run"));
    checks.push(check(host::has_btf(), Level::Warn, "btf", "/sys/kernel/btf/vmlinux".into(),
        "no BTF: the programs still load (they use no CO-RE), but enable CONFIG_DEBUG_INFO_BTF for diagnostics"));
    let caps = host_facts.caps;
    checks.push(check(
        host::has_cap(caps, host::CAP_NET_ADMIN),
        Level::Fail,
        "cap_net_admin",
        format!("CapEff={caps:#x}"),
        "run as root or grant CAP_NET_ADMIN",
    ));
    let can_bpf = host::can_load_bpf(caps);
    checks.push(check(
        can_bpf,
        Level::Warn,
        "cap_bpf",
        format!("CapEff={caps:#x}"),
        "without CAP_BPF+CAP_NET_ADMIN (or CAP_SYS_ADMIN) the agent runs in userspace mode",
    ));
    let iface_ok = host::interface_exists(&cfg.interface);
    checks.push(check(
        iface_ok,
        Level::Fail,
        "interface",
        cfg.interface.clone(),
        &format!(
            "set NETWORK_INTERFACE to one of: {}",
            host::interfaces().join(", ")
        ),
    ));
    let port = host::port_free(cfg.proxy_port);
    let owner = host::port_owner(cfg.proxy_port).unwrap_or_default();
    checks.push(check(
        port.is_ok(),
        Level::Fail,
        "proxy_port",
        format!("{} {}", cfg.proxy_port, owner),
        "choose a free PROXY_PORT",
    ));
    let nft_ok = nft::list_tables();
    checks.push(check(
        nft_ok.is_ok(),
        Level::Fail,
        "nftables",
        nft_ok
            .as_ref()
            .map(|t| format!("{} table(s) readable over netlink", t.len()))
            .unwrap_or_else(|e| e.to_string()),
        "load nf_tables (modprobe nf_tables nft_tproxy) and run as root",
    ));
    let hints = nft::hints(host_facts);
    let steering = match &hints.no_tproxy {
        None => "tproxy (no NAT, no conntrack; the service port is kept)".to_owned(),
        Some(why) => format!("NAT redirect to PROXY_PORT ({why})"),
    };
    checks.push(check(
        hints.no_tproxy.is_none(),
        Level::Warn,
        "steering",
        steering,
        "the NAT fallback engages conntrack for the service's flows and rewrites their \
         destination port; use a kernel >= 4.19 with nft_tproxy and libnftnl >= 1.1.1",
    ));
    checks.push(firewall_check(cfg, hints.no_tproxy.is_none()));
    let bpf = if can_bpf && iface_ok {
        ebpf::probe_load()
    } else {
        Err("not attempted".into())
    };
    checks.push(check(
        bpf.is_ok(),
        Level::Warn,
        "bpf",
        bpf.clone()
            .err()
            .unwrap_or_else(|| "programs load and verify".into()),
        "eBPF unavailable: the agent falls back to userspace mode (counts not kernel-observed)",
    ));
    let request_unit = cfg.unit == crate::config::Unit::Request;
    let destroy = if request_unit {
        host_facts.sock_destroy()
    } else {
        Ok(())
    };
    checks.push(check(
        destroy.is_ok(),
        Level::Warn,
        "sock_destroy",
        match (&destroy, request_unit) {
            (Ok(()), true) => {
                "sockets can be destroyed (sock_diag): requests are reset in place".into()
            }
            (Ok(()), false) => "not needed (UNIT=connection)".into(),
            (Err(e), _) => e.clone(),
        },
        "without CONFIG_INET_DIAG_DESTROY the request unit runs in userspace mode (every \
         connection proxied, requests selected by the proxy)",
    ));
    let active = instance::active();
    checks.push(check(
        active.is_none(),
        Level::Fail,
        "no_active_run",
        active.clone().unwrap_or_else(|| "none".into()),
        "another run is active in this network namespace; wait for it",
    ));

    for c in &checks {
        let tag = match c.level {
            Level::Pass => "PASS",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        match &c.fix {
            Some(fix) => println!("{tag}  {:<14} {}  -> {fix}", c.name, c.detail),
            None => println!("{tag}  {:<14} {}", c.name, c.detail),
        }
    }
    let (mode, attach, table, why) = decide(
        Features {
            kernel: kv,
            can_bpf,
            bpf_loads: bpf.is_ok(),
            sock_destroy: destroy.is_ok(),
            request_unit,
        },
        cfg.mode,
    );
    let steer = if hints.no_tproxy.is_none() {
        "steering tproxy"
    } else {
        "steering NAT redirect"
    };
    println!(
        "path: mode {mode}, attachment {attach}, {table}, {steer}, unit {} ({why})",
        cfg.unit
    );
    if checks.iter().any(|c| c.level == Level::Fail) {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_the_path_for_each_kernel() {
        let f = |kernel, can_bpf, bpf_loads| Features {
            kernel,
            can_bpf,
            bpf_loads,
            sock_destroy: true,
            request_unit: true,
        };
        assert_eq!(
            decide(f((6, 18), true, true), ModeRequest::Auto).0,
            "kernel"
        );
        assert_eq!(
            decide(f((6, 18), true, true), ModeRequest::Auto).1,
            "TCX links"
        );
        assert!(
            decide(f((5, 15), true, true), ModeRequest::Auto)
                .1
                .starts_with("netlink")
        );
        assert!(
            decide(f((5, 4), true, true), ModeRequest::Auto)
                .2
                .starts_with("plain")
        );
        assert_eq!(
            decide(f((6, 18), false, false), ModeRequest::Auto).0,
            "userspace"
        );
        assert_eq!(
            decide(f((6, 18), true, false), ModeRequest::Kernel).0,
            "none: run will fail"
        );
        assert_eq!(
            decide(f((6, 18), true, true), ModeRequest::Userspace).0,
            "userspace"
        );
        let no_destroy = Features {
            sock_destroy: false,
            ..f((6, 18), true, true)
        };
        let (mode, _, _, why) = decide(no_destroy, ModeRequest::Auto);
        assert_eq!(mode, "userspace");
        assert!(why.contains("CONFIG_INET_DIAG_DESTROY"), "{why}");
        let connection_unit = Features {
            request_unit: false,
            ..no_destroy
        };
        assert_eq!(decide(connection_unit, ModeRequest::Auto).0, "kernel");
    }
}
