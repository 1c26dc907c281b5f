//! How selected connections reach the proxy (nftables TPROXY, the NAT redirect fallback) and
//! what that means on a real guest: no NAT chain and no conntrack entries for the service's
//! flows, guest firewalls (firewalld-style nftables, iptables-nft) that still let the fault
//! through, lost flows named live and failing the run, and the eBPF programs' aya-log records.
use std::time::{Duration, Instant};

use reset_tests::{
    bin,
    lab::{Lab, Netns},
    proc::{Agent, agent_once, caller, curl},
    require_root,
};

/// firewalld's default zone, in spirit: an inet table whose input chain drops by default and
/// accepts established traffic, loopback, ICMPv6 and the service port.
const FIREWALLD_STYLE: &str = "
table inet fw {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif lo accept
        meta l4proto ipv6-icmp accept
        tcp dport 80 accept
    }
}
";

fn firewalld_style(vm: &Netns) {
    let mut c = vm
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft -f -");
    use std::io::Write;
    c.stdin
        .take()
        .expect("stdin")
        .write_all(FIREWALLD_STYLE.as_bytes())
        .expect("write ruleset");
    assert!(c.wait().expect("nft").success(), "firewall ruleset refused");
}

/// The same policy through iptables-nft (RHEL 8's and Debian's default iptables).
fn iptables_nft_style(vm: &Netns) {
    for tool in ["iptables-nft", "ip6tables-nft"] {
        for args in [
            &["-P", "INPUT", "DROP"][..],
            &[
                "-A",
                "INPUT",
                "-m",
                "conntrack",
                "--ctstate",
                "ESTABLISHED,RELATED",
                "-j",
                "ACCEPT",
            ],
            &["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
            &["-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"],
        ] {
            let out = vm.output(tool, args);
            assert!(
                out.status.success(),
                "{tool} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Shown: with the fault active at TOXICITY 0 the VM has no nat chain and conntrack has no
/// entry for the service's flows; the proxy never saw a connection.
#[test]
fn no_nat_chain_and_no_conntrack_for_the_service() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(&lab.vm, &["--toxicity", "0", "--total-chaos-duration", "3"]);
    let ruleset = lab.vm.stdout("nft", &["list", "ruleset"]);
    assert!(ruleset.contains("tproxy to :8080"), "{ruleset}");
    assert!(
        !ruleset.contains("nat"),
        "a nat chain is in place:\n{ruleset}"
    );
    assert!(
        !ruleset.contains(" ct "),
        "a conntrack expression:\n{ruleset}"
    );
    let out = caller(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "100", "--concurrency", "4"],
    );
    assert_eq!(out["succeeded"], 100, "{out}");
    let ct = lab.vm.output("conntrack", &["-L", "-p", "tcp"]);
    let listing = String::from_utf8_lossy(&ct.stdout);
    assert!(
        !listing.contains("dport=80"),
        "conntrack tracks the service's flows:\n{listing}"
    );
    let run = agent.finish();
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert_eq!(run.u64("flows_seen"), 100);
    assert_eq!(run.u64("proxy_accepted"), 0);
    assert_eq!(run.report()["steering"], "tproxy");
    lab.assert_clean();
}

/// Selected flows through a guest firewall: 10 new connections at TOXICITY 50 exact, so 5 are
/// reset and 5 answered, and every count agrees.
fn selected_flows_pass(lab: &Lab, mode: &str) {
    let mut agent = Agent::start(
        &lab.vm,
        &[
            "--toxicity",
            "50",
            "--selection",
            "exact",
            "--reset-timeout",
            "200",
            "--total-chaos-duration",
            "30",
            "--mode",
            mode,
        ],
    );
    let (mut resets, mut ok) = (0, 0);
    for _ in 0..10 {
        let c = curl(&lab.caller, &lab.url(false, 80, "/"));
        match c.exit {
            56 => resets += 1,
            0 => ok += 1,
            _ => panic!("{mode}: neither a reset nor an answer: {c:?}"),
        }
    }
    agent.signal("TERM");
    let run = agent.finish();
    let r = run.report();
    assert_eq!((resets, ok), (5, 5), "{mode}: {r}");
    assert_eq!(r["flows_selected"], 5, "{mode}: {r}");
    assert_eq!(r["resets_issued"], 5, "{mode}: {r}");
    assert_eq!(r["resets_observed"], 5, "{mode}: {r}");
    if mode == "kernel" {
        assert_eq!(r["proxy_accepted"], 5, "{mode}: {r}");
    }
    assert_eq!(r["flows_lost"], 0, "{mode}: {r}");
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{mode}: {r}");
}

/// Shown: a firewalld-style input chain (policy drop) lets the fault through in kernel and
/// userspace mode, because tproxied packets keep the service's port; preflight says so.
#[test]
fn firewalld_style_guest_firewall_lets_the_fault_through() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    firewalld_style(&lab.vm);
    let out = agent_once(&lab.vm, &["preflight"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PASS  guest_firewall") && text.contains("inet fw input"),
        "{text}"
    );
    assert!(text.contains("tproxy keeps port 80"), "{text}");
    for mode in ["kernel", "userspace"] {
        selected_flows_pass(&lab, mode);
    }
}

/// Shown: the same with an iptables-nft INPUT chain.
#[test]
fn iptables_nft_guest_firewall_lets_the_fault_through() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    iptables_nft_style(&lab.vm);
    let text = String::from_utf8_lossy(&agent_once(&lab.vm, &["preflight"]).stdout).into_owned();
    assert!(text.contains("ip filter INPUT"), "{text}");
    for mode in ["kernel", "userspace"] {
        selected_flows_pass(&lab, mode);
    }
}

/// Shown: where the guest's firewall does drop the steered connections (the NAT fallback of
/// kernels without nft_tproxy, here assumed with RESET_AGENT_ASSUME_KERNEL=4.18, rewrites the
/// destination to PROXY_PORT, which the firewall does not accept), preflight warns, the agent
/// warns about lost flows during the window, and the run ends with exit code 5.
#[test]
fn lost_flows_are_warned_live_and_fail_the_run() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    firewalld_style(&lab.vm);
    let env = [("RESET_AGENT_ASSUME_KERNEL", "4.18")];
    let out = lab
        .vm
        .command(bin("reset-agent"))
        .envs(env)
        .arg("preflight")
        .output()
        .expect("preflight");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WARN  guest_firewall"), "{text}");
    assert!(text.contains("steering NAT redirect"), "{text}");
    let mut agent = Agent::spawn_with(
        &lab.vm,
        &bin("reset-agent"),
        &env,
        &["--toxicity", "100", "--total-chaos-duration", "8"],
    );
    agent.wait_active();
    let t0 = Instant::now();
    for _ in 0..3 {
        let c = reset_tests::proc::curl_with(
            &lab.caller,
            &lab.url(false, 80, "/"),
            &["--max-time", "1"],
        );
        assert_eq!(c.exit, 28, "the firewall drops the redirected SYN: {c:?}");
    }
    let run = agent.finish();
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(run.code(), Some(5), "{}", run.stderr);
    // Live: each warning names how many flows are lost so far, growing to all three.
    let lost: Vec<u64> = run
        .stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("lost flows"))
        .filter_map(|l| {
            l.split("lost=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(
        lost.last(),
        Some(&3),
        "live warnings {lost:?}:\n{}",
        run.stderr
    );
    let r = run.report();
    assert_eq!(r["steering"], "redirect", "{r}");
    assert_eq!(r["flows_selected"], 3, "{r}");
    assert_eq!(r["flows_lost"], 3, "{r}");
    assert!(
        r["errors"][0].as_str().unwrap_or("").contains("lost flows"),
        "{r}"
    );
    lab.assert_clean();
}

/// Shown: the eBPF programs log through aya-log only on rare events. A window change is one;
/// its record reaches the agent's log (target `ebpf`). Under load, 600 new connections, the
/// programs write no other record: the per-packet path has no log call.
#[test]
fn ebpf_logs_rare_events_only() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(
        &lab.vm,
        &[
            "--toxicity",
            "50",
            "--reset-timeout",
            "50",
            "--total-chaos-duration",
            "4",
        ],
    );
    let out = caller(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &[
            "--requests",
            "600",
            "--concurrency",
            "8",
            "--duration-s",
            "3",
        ],
    );
    assert!(out["requests"].as_u64().unwrap_or(0) >= 100, "{out}");
    let run = agent.finish();
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("ebpf") && l.contains("window opened")),
        "{}",
        run.stderr
    );
    let records = run.u64("ebpf_log_records");
    let seen = run.u64("flows_seen");
    println!("{seen} flows, {records} eBPF log records");
    assert!(seen >= 100, "load reached the programs: {seen}");
    assert!(
        (1..=2).contains(&records),
        "only window changes are logged, got {records} records for {seen} flows"
    );
}

/// Shown: the controller shows a run that lost flows as failed. Here a guest rule drops the
/// selected SYNs before they reach the proxy (any rule that drops marked packets would).
#[test]
fn controller_fails_a_vm_whose_agent_lost_flows() {
    if !require_root() {
        return;
    }
    use reset_tests::ctl::{one_vm, run_args, start_injected};
    let (lab, _svc, sim) = one_vm();
    for cmd in [
        &["add", "table", "inet", "fw"][..],
        &[
            "add", "chain", "inet", "fw", "input", "{", "type", "filter", "hook", "input",
            "priority", "0", ";", "}",
        ],
        &[
            "add",
            "rule",
            "inet",
            "fw",
            "input",
            "meta",
            "mark",
            "0x72737470",
            "drop",
        ],
    ] {
        lab.vm.stdout("nft", cmd);
    }
    let agent = bin("reset-agent");
    let child = start_injected(&sim, &lab, &run_args(agent.to_str().unwrap(), "5", &[]));
    let c =
        reset_tests::proc::curl_with(&lab.caller, &lab.url(false, 80, "/"), &["--max-time", "1"]);
    assert_eq!(c.exit, 28, "{c:?}");
    let out = child.finish(Duration::from_secs(60));
    let v = out.report();
    assert_eq!(out.code(), Some(1), "{v}");
    let row = &v["vms"][0];
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["agent_exit_code"], 5, "{row}");
    assert!(
        row["error"].as_str().unwrap_or("").contains("lost flows"),
        "{row}"
    );
    assert_eq!(row["agent_report"]["flows_lost"], 1, "{row}");
}
