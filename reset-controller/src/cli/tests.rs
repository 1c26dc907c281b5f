//! Flag defaults and parsing.

use std::time::Duration;

use reset_controller::config::{FaultSettings, RunConfig, Stream};

use super::*;

/// `reset-controller run` with the required flags (VM `a`, or `vms`) and `extra`.
fn try_run(vms: &str, extra: &[&str]) -> Result<RunArgs, clap::Error> {
    let mut argv = vec![
        "reset-controller",
        "run",
        "--govc-url",
        "h",
        "--govc-username",
        "u",
        "--vm-name",
        vms,
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv)?.command {
        Command::Run(r) => Ok(r),
        other => panic!("parsed as {other:?}"),
    }
}

fn run(extra: &[&str]) -> RunArgs {
    try_run("a", extra).unwrap()
}

#[test]
fn defaults_match_the_seed() {
    let r = try_run("a,b", &[]).unwrap();
    let f = FaultSettings::resolve(&r.fault.raw()).unwrap();
    assert_eq!((f.target_service_port, f.proxy_port), (80, 8080));
    assert_eq!(f.network_interface, "ens160");
    assert_eq!(f.toxicity.percent(), 100.0);
    assert_eq!(f.reset_timeout, Duration::from_millis(2000));
    assert_eq!(f.total_chaos_duration, Duration::from_secs(30));
    assert_eq!((r.ramp_time.as_str(), r.chaos_interval), ("0", 10));
    assert!(matches!(r.sequence, SequenceArg::Parallel));
    assert!(r.vc.govc_insecure);
    assert_eq!(r.targets.vm_user_name, None, "VM_USER_NAME has no default");
    assert_eq!(r.probe.probe_url, None);
    assert_eq!(
        (r.probe.probe_interval, r.probe.probe_timeout),
        (1000, 5000)
    );
    assert_eq!(r.probe.probe_max_error_percent, 5.0);
    assert_eq!(
        (r.metrics.metrics_listen, r.metrics.metrics_linger),
        (None, 0)
    );
    assert_eq!(r.metrics.agent_metrics_listen, None);
    assert_eq!(r.vc.vc_concurrency, 8);
    assert_eq!(
        r.prom_probe.inputs(),
        None,
        "no Prometheus probe unless asked"
    );
    assert_eq!(
        (
            r.prom_probe.prom_probe_interval,
            r.prom_probe.prom_probe_timeout
        ),
        (5000, 5000)
    );
    assert!(matches!(
        r.prom_probe.prom_probe_mode,
        PromModeArg::Continuous
    ));
}

#[test]
fn prometheus_probe_flags() {
    let r = run(&[
        "--prom-probe-url",
        "http://198.18.0.1:9090",
        "--prom-probe-query",
        "sum(up)",
        "--prom-probe-comparator",
        ">=",
        "--prom-probe-value",
        "-1.5",
        "--prom-probe-mode",
        "end",
        "--prom-probe-interval",
        "250",
        "--vc-concurrency",
        "2",
        "--agent-metrics-listen",
        "0.0.0.0:9464",
    ]);
    let p = r.prom_probe.inputs().unwrap();
    assert_eq!(p.url.as_deref(), Some("http://198.18.0.1:9090"));
    assert_eq!(p.comparator.as_deref(), Some(">="));
    assert_eq!(
        (p.value, p.mode, p.interval_ms),
        (Some(-1.5), PromMode::End, 250)
    );
    assert_eq!(r.inputs().vcenter.concurrency, 2);
    assert_eq!(
        r.inputs().agent_metrics,
        Some("0.0.0.0:9464".parse().unwrap())
    );
    // One of the four alone is still a probe: the library names what is missing.
    let alone = run(&["--prom-probe-query", "up"])
        .prom_probe
        .inputs()
        .unwrap();
    assert_eq!(alone.url, None);
    assert!(try_run("a", &["--prom-probe-mode", "sometimes"]).is_err());
}

#[test]
fn probe_and_metrics_flags() {
    let r = run(&[
        "--probe-url",
        "http://198.18.0.2/health",
        "--probe-interval",
        "200",
        "--probe-max-error-percent",
        "0.5",
        "--metrics-listen",
        "[::1]:9464",
        "--metrics-linger",
        "7",
    ]);
    assert_eq!(r.probe.probe_interval, 200);
    assert_eq!(r.probe.probe_max_error_percent, 0.5);
    assert_eq!(
        r.metrics.metrics_listen,
        Some("[::1]:9464".parse().unwrap())
    );
    assert_eq!(r.metrics.metrics_linger, 7);
    let bad = try_run("a", &["--metrics-listen", "9464"]);
    assert!(bad.is_err(), "METRICS_LISTEN needs an address and a port");
}

#[test]
fn there_is_no_password_flag() {
    for flag in ["--vm-password", "--govc-password", "--password"] {
        assert!(try_run("a", &[flag, "x"]).is_err(), "{flag} must not exist");
    }
}

#[test]
fn secrets_never_show_in_debug_output_or_errors() {
    // A panic message or a `{:?}` in a log prints these structures; the passwords read from
    // files must come out as `***` everywhere.
    let dir = std::env::temp_dir().join(format!("reset-ctl-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (vc, guest) = (dir.join("vc"), dir.join("guest"));
    std::fs::write(&vc, "vc-Debug-Secret-1\n").unwrap();
    std::fs::write(&guest, "guest-Debug-Secret-2\n").unwrap();
    let agent = std::env::current_exe().unwrap();
    let mut r = run(&[
        "--vm-user-name",
        "root",
        "--govc-password-file",
        vc.to_str().unwrap(),
        "--vm-password-file",
        guest.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
    ]);
    r.vc.govc_url = "https://vc.example/sdk".into();
    let cfg = RunConfig::resolve(&r.inputs()).unwrap();
    assert_eq!(cfg.vcenter.password.expose(), "vc-Debug-Secret-1");
    let auth = reset_controller::vcenter::GuestAuth {
        user: cfg.targets.guest_user.clone(),
        password: cfg.targets.guest_password.clone(),
    };
    let shown = format!("{cfg:?} {cfg:#?} {auth:?} {:?}", cfg.targets);
    assert!(!shown.contains("Debug-Secret"), "{shown}");
    assert!(shown.contains("***"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fault_flags_map_to_the_contracts_raw_settings() {
    let r = run(&[
        "--toxicity",
        "50%",
        "--stream",
        "Upstream",
        "--ramp-time",
        "3",
    ]);
    let i = r.inputs();
    assert_eq!(i.fault.toxicity.as_deref(), Some("50%"));
    assert_eq!(i.fault.ramp_time.as_deref(), Some("3"));
    let f = FaultSettings::resolve(&i.fault).unwrap();
    assert_eq!(f.toxicity.ppm(), 500_000);
    assert_eq!(f.stream, Stream::Upstream);
}
