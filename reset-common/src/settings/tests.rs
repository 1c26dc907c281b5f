//! The contract's rules, value by value: defaults, limits, spellings, the interface rule.

use std::string::{String, ToString};
use std::time::Duration;
use std::vec;
use std::vec::Vec;

use super::*;

fn raw(f: impl FnOnce(&mut RawSettings)) -> RawSettings {
    let mut r = RawSettings::default();
    f(&mut r);
    r
}

#[test]
fn toxicity_parses_decimals_exactly() {
    assert_eq!(Toxicity::parse("0.5").unwrap().ppm(), 5_000);
    assert_eq!(Toxicity::parse("30").unwrap().ppm(), 300_000);
    assert_eq!(Toxicity::parse("100").unwrap().ppm(), 1_000_000);
    assert_eq!(Toxicity::parse("99.9999").unwrap().ppm(), 999_999);
    assert_eq!(Toxicity::parse(".25").unwrap().ppm(), 2_500);
    assert_eq!(Toxicity::parse("50%").unwrap().ppm(), 500_000);
    assert_eq!(Toxicity::parse(" 12.5% ").unwrap().ppm(), 125_000);
    for bad in [
        "101", "-1", "abc", "", ".", "1e2", "NaN", "100.0001", "0.00001", "+5", " 5 5", "%", "50%%",
    ] {
        assert!(Toxicity::parse(bad).is_none(), "{bad:?} should be refused");
    }
    assert_eq!(Toxicity::parse("0.5").unwrap().to_string(), "0.5");
    assert_eq!(Toxicity::parse("30").unwrap().to_string(), "30");
    assert_eq!(Toxicity::parse("30").unwrap().percent(), 30.0);
}

#[test]
fn defaults_match_the_documentation() {
    let f = FaultSettings::resolve(&RawSettings::default()).unwrap();
    assert_eq!((f.target_service_port, f.proxy_port), (80, 8080));
    assert_eq!(f.network_interface, "ens160");
    assert_eq!(f.toxicity.ppm(), 1_000_000);
    assert_eq!(f.reset_timeout, Duration::from_millis(2000));
    assert_eq!(f.total_chaos_duration, Duration::from_secs(30));
    assert_eq!(ramp_time(None).unwrap(), Duration::ZERO);
    assert_eq!(
        (f.stream, f.selection, f.mode),
        (Stream::Downstream, Selection::Random, Mode::Auto)
    );
    // Each tunable's default text is a value its own parser accepts, and is what it means.
    assert_eq!(STREAM.default, Stream::Downstream.as_str());
    assert_eq!(SELECTION.default, Selection::Random.as_str());
    assert_eq!(MODE.default, Mode::Auto.as_str());
}

#[test]
fn every_tunable_has_its_key_and_flag() {
    let keys: Vec<&str> = FAULT_TUNABLES.iter().map(|t| t.key).collect();
    let file: String = FAULT_TUNABLES
        .iter()
        .map(|t| std::format!("{} = {:?}\n", t.key, t.default))
        .collect();
    let parsed: RawSettings = toml::from_str(&file).unwrap();
    assert_eq!(
        FaultSettings::resolve(&parsed).unwrap(),
        FaultSettings::resolve(&RawSettings::default()).unwrap(),
        "every key of {keys:?} is in the file schema and its default reads back"
    );
    for t in FAULT_TUNABLES {
        assert_eq!(t.env, t.key.to_ascii_uppercase());
        assert_eq!(t.flag(), std::format!("--{}", t.key.replace('_', "-")));
    }
    assert_eq!(TOTAL_CHAOS_DURATION.flag(), "--total-chaos-duration");
}

#[test]
fn bad_values_name_the_tunable_and_the_fix() {
    let cases: Vec<(RawSettings, &str)> = vec![
        (raw(|r| r.toxicity = Some("101".into())), "TOXICITY"),
        (raw(|r| r.toxicity = Some("-1".into())), "TOXICITY"),
        (raw(|r| r.toxicity = Some("abc".into())), "TOXICITY"),
        (
            raw(|r| r.reset_timeout = Some("-5".into())),
            "RESET_TIMEOUT",
        ),
        (
            raw(|r| r.reset_timeout = Some("3600001".into())),
            "RESET_TIMEOUT",
        ),
        (
            raw(|r| r.total_chaos_duration = Some("0".into())),
            "TOTAL_CHAOS_DURATION",
        ),
        (raw(|r| r.proxy_port = Some("80".into())), "PROXY_PORT"),
        (raw(|r| r.proxy_port = Some("70000".into())), "PROXY_PORT"),
        (
            raw(|r| r.target_service_port = Some("0".into())),
            "TARGET_SERVICE_PORT",
        ),
        (raw(|r| r.stream = Some("sideways".into())), "STREAM"),
        (raw(|r| r.selection = Some("fair".into())), "SELECTION"),
        (raw(|r| r.mode = Some("".into())), "MODE"),
        (
            raw(|r| r.network_interface = Some("a/b".into())),
            "NETWORK_INTERFACE",
        ),
        (
            raw(|r| r.network_interface = Some("eth0:1".into())),
            "NETWORK_INTERFACE",
        ),
        (
            raw(|r| r.network_interface = Some("eth\t0".into())),
            "NETWORK_INTERFACE",
        ),
    ];
    for (r, name) in cases {
        let msg = FaultSettings::resolve(&r).unwrap_err().to_string();
        assert!(msg.contains(name), "{msg}");
    }
    let msg = ramp_time(Some("1.5")).unwrap_err().to_string();
    assert!(
        msg.starts_with("RAMP_TIME must be a whole number of seconds"),
        "{msg}"
    );
    assert_eq!(
        FaultSettings::resolve(&raw(|r| r.proxy_port = Some("80".into()))),
        Err(SettingError::SamePorts(80))
    );
}

#[test]
fn choices_read_any_case_and_print_lowercase() {
    assert_eq!(Stream::parse(" Upstream ").unwrap(), Stream::Upstream);
    assert_eq!(Selection::parse("EXACT").unwrap(), Selection::Exact);
    assert_eq!(Mode::parse("userspace").unwrap(), Mode::Userspace);
    assert!(Stream::parse("DOWN").is_err());
    for m in Mode::ALL {
        assert_eq!(Mode::parse(m.as_str()).unwrap(), *m);
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(Stream::TUNABLE, STREAM);
}

/// The kernel's dev_valid_name(), transcribed: the oracle the rule must equal.
fn kernel_accepts(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= 16 || name == "." || name == ".." {
        return false;
    }
    !b.iter()
        .any(|&c| c == b'/' || c == b':' || c == 0 || matches!(c, b' ' | b'\t'..=b'\r'))
}

#[test]
fn interface_rule_is_the_kernels() {
    for name in [
        "ens160",
        "eth0",
        "a",
        "fifteen-chars-x",
        "sixteen-chars-xx",
        "",
        ".",
        "..",
        "...",
        "eth0:1",
        "a/b",
        "eth 0",
        "eth\t0",
        "eth\u{b}0",
        "eth\u{c}0",
        "eth\r0",
        "eth\n0",
        "eth\0",
        // Unicode whitespace is not C whitespace: the kernel takes it (the controller used
        // to refuse it), and a multi-byte name counts in bytes.
        "eth\u{a0}0",
        "\u{2003}x",
        "ééééééééé",
    ] {
        assert_eq!(
            interface_name_ok(name),
            kernel_accepts(name),
            "{name:?}: the rule must be the kernel's"
        );
        assert_eq!(network_interface(name).is_ok(), kernel_accepts(name));
    }
}

#[test]
fn config_file_keys_numbers_and_unknown_keys() {
    let r: RawSettings =
        toml::from_str("toxicity = 30\nreset_timeout = 300\nstream = \"upstream\"\n").unwrap();
    let f = FaultSettings::resolve(&r).unwrap();
    assert_eq!(f.toxicity.ppm(), 300_000);
    assert_eq!(f.reset_timeout, Duration::from_millis(300));
    assert_eq!(f.stream, Stream::Upstream);
    let unknown = toml::from_str::<RawSettings>("toxic = 3").unwrap_err();
    assert!(unknown.to_string().contains("toxic"), "{unknown}");
    let r: RawSettings = toml::from_str("toxicity = 0.5").unwrap();
    assert_eq!(r.toxicity.as_deref(), Some("0.5"));
    let r: RawSettings = toml::from_str("toxicity = \"50%\"").unwrap();
    assert_eq!(FaultSettings::resolve(&r).unwrap().toxicity.ppm(), 500_000);
}

#[test]
fn flags_win_over_file() {
    let flags = raw(|r| r.toxicity = Some("10".into()));
    let file = raw(|r| {
        r.toxicity = Some("90".into());
        r.proxy_port = Some("9090".into());
    });
    let f = FaultSettings::resolve(&flags.or(file)).unwrap();
    assert_eq!(f.toxicity.ppm(), 100_000);
    assert_eq!(f.proxy_port, 9090);
}

#[test]
fn serialized_as_reports_show_it() {
    let f = FaultSettings::resolve(&raw(|r| r.toxicity = Some("37.5".into()))).unwrap();
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "target_service_port": 80, "proxy_port": 8080, "network_interface": "ens160",
            "toxicity": 37.5, "reset_timeout_ms": 2000, "total_chaos_duration_s": 30,
            "stream": "downstream", "selection": "random", "mode": "auto", "unit": "request"
        })
    );
}
