//! Resolving: what is refused, with which error, before anything is contacted.

use std::path::PathBuf;

use super::vsphere::parse_vm_names;
use super::*;

/// A `run` as cli.rs maps it with every flag left at its default (the fault's defaults are
/// the settings contract's), this test binary standing in for the agent, and the passwords
/// in files so no test touches the environment.
fn inputs(dir: &std::path::Path) -> RunInputs {
    let pw = dir.join("pw");
    std::fs::write(&pw, "pw-Config-Test\n").unwrap();
    RunInputs {
        vcenter: VcenterInputs {
            url: "https://vc.example/sdk".into(),
            user: "u".into(),
            password_file: Some(pw.clone()),
            insecure: true,
            ca_certs: None,
            reconnect_timeout_s: 300,
            concurrency: 8,
        },
        targets: TargetInputs {
            vm_names: "a, b,a".into(),
            user: Some("root".into()),
            password_file: Some(pw),
            agent: Some(std::env::current_exe().unwrap()),
            guest_files_ttl_s: 600,
        },
        fault: RawSettings::default(),
        chaos_interval_s: 10,
        sequence: Sequence::Parallel,
        probe: None,
        prom_probe: None,
        metrics: None,
        agent_metrics: None,
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("reset-ctl-config-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn vm_names() {
    assert_eq!(parse_vm_names("a, b,a").unwrap(), ["a", "b"]);
    assert!(parse_vm_names("").is_err());
    assert!(parse_vm_names("a,,b").is_err());
}

#[test]
fn resolves_the_documented_defaults() {
    let dir = scratch("defaults");
    let c = RunConfig::resolve(&inputs(&dir)).unwrap();
    assert_eq!(c.targets.vms, ["a", "b"]);
    assert_eq!(c.targets.guest_user, "root");
    assert_eq!(
        c.fault,
        FaultSettings::resolve(&RawSettings::default()).unwrap()
    );
    assert_eq!(
        (c.ramp_time, c.chaos_interval),
        (Duration::ZERO, Duration::from_secs(10))
    );
    assert_eq!(c.vcenter.password.expose(), "pw-Config-Test");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_guest_user_is_required() {
    let dir = scratch("user");
    for missing in [None, Some(""), Some("  ")] {
        let mut i = inputs(&dir);
        i.targets.user = missing.map(String::from);
        let e = RunConfig::resolve(&i).unwrap_err();
        assert!(matches!(e, ConfigError::NoGuestUser), "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("VM_USER_NAME is not set") && msg.contains("VM_USER_NAME=root"),
            "names the variable and the fix: {msg}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fault_tunables_follow_the_settings_contract() {
    let dir = scratch("fault");
    let mut i = inputs(&dir);
    i.fault.toxicity = Some("50%".into());
    i.fault.network_interface = Some("eth\u{a0}0".into());
    i.fault.ramp_time = Some("2".into());
    let c = RunConfig::resolve(&i).unwrap();
    assert_eq!(
        c.fault.toxicity.ppm(),
        500_000,
        "TOXICITY 50% as the agent reads it"
    );
    assert_eq!(c.fault.network_interface, "eth\u{a0}0", "the kernel's rule");
    assert_eq!(c.ramp_time, Duration::from_secs(2));
    for (set, name) in [
        (
            (|r: &mut RawSettings| r.toxicity = Some("150".into())) as fn(&mut RawSettings),
            "TOXICITY",
        ),
        (
            |r| r.network_interface = Some("eth0:1".into()),
            "NETWORK_INTERFACE",
        ),
        (|r| r.proxy_port = Some("80".into()), "PROXY_PORT"),
        (|r| r.ramp_time = Some("-1".into()), "RAMP_TIME"),
        (|r| r.stream = Some("sideways".into()), "STREAM"),
    ] {
        let mut i = inputs(&dir);
        set(&mut i.fault);
        let e = RunConfig::resolve(&i).unwrap_err();
        assert!(matches!(e, ConfigError::Setting(_)), "{e}");
        assert!(e.to_string().contains(name), "{e}");
    }
    let mut i = inputs(&dir);
    i.chaos_interval_s = settings::MAX_DURATION_S + 1;
    let e = RunConfig::resolve(&i).unwrap_err().to_string();
    assert!(e.starts_with("CHAOS_INTERVAL must be"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_vcenter_and_agent_settings_are_typed_errors() {
    let dir = scratch("vc");
    let mut i = inputs(&dir);
    i.vcenter.url = "ftp://vc/sdk".into();
    assert!(matches!(
        RunConfig::resolve(&i),
        Err(ConfigError::GovcUrl(_))
    ));
    let mut i = inputs(&dir);
    i.targets.agent = Some(dir.join("no-such-agent"));
    assert!(matches!(
        RunConfig::resolve(&i),
        Err(ConfigError::NoAgent(_))
    ));
    let mut i = inputs(&dir);
    i.targets.password_file = Some(dir.join("no-such-file"));
    assert!(matches!(
        RunConfig::resolve(&i),
        Err(ConfigError::PasswordFile { .. })
    ));
    let mut i = inputs(&dir);
    i.probe = Some(ProbeInputs {
        url: "https://h/".into(),
        interval_ms: 1000,
        timeout_ms: 5000,
        max_error_percent: 5.0,
    });
    assert!(matches!(
        RunConfig::resolve(&i),
        Err(ConfigError::ProbeUrl(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn vcenter_concurrency_and_the_prometheus_probe() {
    let dir = scratch("prom");
    let c = RunConfig::resolve(&inputs(&dir)).unwrap();
    assert_eq!(c.vcenter.concurrency, 8);
    assert_eq!(c.prom_probe, None);
    for bad in [0, vsphere::MAX_CONCURRENCY + 1] {
        let mut i = inputs(&dir);
        i.vcenter.concurrency = bad;
        let e = RunConfig::resolve(&i).unwrap_err();
        assert!(matches!(e, ConfigError::Setting(_)), "{e}");
        assert!(e.to_string().starts_with("VC_CONCURRENCY must be"), "{e}");
    }
    let mut i = inputs(&dir);
    i.prom_probe = Some(PromProbeInputs {
        url: Some("http://prometheus:9090".into()),
        query: Some("sum(up)".into()),
        comparator: None,
        value: Some(1.0),
        ..PromProbeInputs::default()
    });
    let e = RunConfig::resolve(&i).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::PromProbe(PromProbeError::Missing("PROM_PROBE_COMPARATOR"))
        ),
        "{e}"
    );
    let p = i.prom_probe.as_mut().unwrap();
    p.comparator = Some("==".into());
    p.interval_ms = 1000;
    p.timeout_ms = 1000;
    let c = RunConfig::resolve(&i).unwrap();
    let p = c.prom_probe.unwrap();
    assert_eq!(
        (p.comparator, p.query_url.as_str()),
        (Comparator::Eq, "http://prometheus:9090/api/v1/query")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
