//! Bad input, end to end (issue 6): every tunable out of range or malformed, given as a flag,
//! as an environment variable and in the config file, and every way a config file can be
//! unusable. Each case must end with the documented exit code, a message naming the tunable (or
//! file) and the fix, and nothing changed in the VM namespace. The controller's own tunables
//! get the same treatment before it contacts vCenter.
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Output, Stdio};

use reset_tests::{
    bin, ctl,
    lab::Lab,
    require_root,
    sim::{Credentials, TempDir},
};

/// (NAME, flag, config key, bad values) for every agent tunable that takes a value.
const AGENT_TUNABLES: &[(&str, &str, &str, &[&str])] = &[
    (
        "TARGET_SERVICE_PORT",
        "--target-service-port",
        "target_service_port",
        &["0", "65536", "-1", "http", "8o"],
    ),
    (
        "PROXY_PORT",
        "--proxy-port",
        "proxy_port",
        &["0", "70000", "-8080", "proxy"],
    ),
    (
        "NETWORK_INTERFACE",
        "--network-interface",
        "network_interface",
        &["", "eth0/1", "eth0:1", "a-name-longer-than-15", "eth 0"],
    ),
    (
        "TOXICITY",
        "--toxicity",
        "toxicity",
        &["101", "-1", "abc", "NaN", "inf", "1e3", "0.00001", "%"],
    ),
    (
        "RESET_TIMEOUT",
        "--reset-timeout",
        "reset_timeout",
        &["-5", "soon", "1.5", "999999999999"],
    ),
    (
        "TOTAL_CHAOS_DURATION",
        "--total-chaos-duration",
        "total_chaos_duration",
        &["0", "-3", "forever", "9999999999"],
    ),
    (
        "RAMP_TIME",
        "--ramp-time",
        "ramp_time",
        &["-1", "later", "1.5"],
    ),
    ("STREAM", "--stream", "stream", &["sideways", "", "DOWN"]),
    ("SELECTION", "--selection", "selection", &["fair", ""]),
    ("MODE", "--mode", "mode", &["magic", ""]),
];

/// How a value reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Flag,
    Env,
    File,
}

fn toml_value(key: &str, value: &str) -> String {
    // Numbers as TOML numbers where they parse, everything else as strings: both spellings
    // must be refused the same way.
    let numeric = value.parse::<f64>().is_ok() && !matches!(value, "NaN" | "inf");
    let port_or_time = key.ends_with("port") || key.ends_with("duration") || key.ends_with("time");
    if numeric && (port_or_time || key.ends_with("timeout") || key == "toxicity") {
        format!("{key} = {value}\n")
    } else {
        format!("{key} = {value:?}\n")
    }
}

fn agent(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = lab.vm.command(bin("reset-agent"));
    c.args(args)
        .env_remove("RESET_AGENT_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run reset-agent")
}

/// Nothing of ours in the namespace: no table, no tc program or filter, no agent.
fn assert_unchanged(lab: &Lab, case: &str) {
    assert_eq!(lab.leftovers(), Vec::<String>::new(), "{case}");
}

/// Fails with every case that was not refused properly, or reports how many were.
fn assert_all_refused(failures: &[String], cases: usize, what: &str) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{cases} bad {what} inputs refused");
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("agent.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn every_agent_tunable_refused_in_flags_env_and_config_file() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let dir = TempDir::new("bad-input").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cases = 0;
    let mut failures = Vec::new();
    for (name, flag, key, values) in AGENT_TUNABLES {
        for value in *values {
            for via in [Via::Flag, Via::Env, Via::File] {
                let case = format!("{name}={value:?} via {via:?}");
                let mut args = vec!["run", "--total-chaos-duration", "5"];
                if *name == "TOTAL_CHAOS_DURATION" {
                    args.truncate(1);
                }
                let mut env = Vec::new();
                let cfg;
                match via {
                    Via::Flag => {
                        args.push(flag);
                        args.push(value);
                    }
                    Via::Env => env.push((*name, *value)),
                    Via::File => {
                        cfg = write_config(dir.path(), &toml_value(key, value));
                        args.extend(["--config", cfg.to_str().unwrap()]);
                    }
                }
                let out = agent(&lab, &args, &env);
                let err = String::from_utf8_lossy(&out.stderr);
                // Interface names are checked against the kernel: a well-formed name that
                // does not exist is an environment error (1); malformed ones are usage (2).
                let expect: &[i32] = if *name == "NETWORK_INTERFACE" {
                    &[1, 2]
                } else {
                    &[2]
                };
                let code = out.status.code().unwrap_or(-1);
                if !expect.contains(&code) {
                    failures.push(format!("{case}: exit {code}: {err}"));
                } else if !(err.contains(name) || (via == Via::File && err.contains(key))) {
                    failures.push(format!("{case}: does not name {name}: {err}"));
                } else if err.contains("panicked") || err.lines().count() > 3 {
                    failures.push(format!("{case}: not one clear message: {err}"));
                }
                assert_unchanged(&lab, &case);
                cases += 1;
            }
        }
    }
    assert_all_refused(&failures, cases, "agent");
}

#[test]
fn unusable_config_files_are_refused() {
    if !require_root() {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new("bad-config").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let good = "toxicity = 50\nreset_timeout = 300\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "truncated",
            "toxicity = 50\nreset_timeout = ",
            "is not valid",
        ),
        ("unterminated string", "stream = \"down", "is not valid"),
        ("unknown key", "toxicity = 50\ntoxcity = 20\n", "toxcity"),
        ("wrong type", "proxy_port = [8080]\n", "is not valid"),
        ("binary garbage", "\u{0}\u{1}\u{2}\u{fffd}", "is not valid"),
    ];
    for (what, text, needle) in cases {
        let p = write_config(dir.path(), text);
        let out = agent(
            &lab,
            &[
                "run",
                "--total-chaos-duration",
                "5",
                "--config",
                p.to_str().unwrap(),
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(needle) && err.contains("agent.toml"),
            "{what}: {err}"
        );
        assert_unchanged(&lab, what);
    }
    // Too large.
    let p = write_config(dir.path(), &format!("# {}\n{good}", "x".repeat(70_000)));
    let out = agent(&lab, &["run", "--config", p.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("larger than 64 KiB"), "{err}");
    // World-writable, then owned by someone else.
    let p = write_config(dir.path(), good);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = agent(&lab, &["run", "--config", p.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("writable") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    let out = agent(&lab, &["run", "--config", p.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("owned by"), "{err}");
    // Missing.
    let missing = dir.path().join("nope.toml");
    let out = agent(&lab, &["run", "--config", missing.to_str().unwrap()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read config file"), "{err}");
    assert_unchanged(&lab, "config files");
}

/// (NAME, flag, bad values) for the controller's tunables; validated before any vCenter call.
const CONTROLLER_TUNABLES: &[(&str, &str, &[&str])] = &[
    (
        "TARGET_SERVICE_PORT",
        "--target-service-port",
        &["0", "65536", "x"],
    ),
    ("PROXY_PORT", "--proxy-port", &["0", "65536", "x"]),
    (
        "NETWORK_INTERFACE",
        "--network-interface",
        &["", "eth0/1", "eth0:1", "a-name-longer-than-15"],
    ),
    ("TOXICITY", "--toxicity", &["101", "-1", "abc", "NaN"]),
    ("RESET_TIMEOUT", "--reset-timeout", &["-5", "soon"]),
    (
        "TOTAL_CHAOS_DURATION",
        "--total-chaos-duration",
        &["0", "-3", "x"],
    ),
    ("RAMP_TIME", "--ramp-time", &["-1", "x"]),
    ("CHAOS_INTERVAL", "--chaos-interval", &["-1", "x"]),
    ("SEQUENCE", "--sequence", &["random", ""]),
    ("VM_NAME", "--vm-name", &["", ",", "a,,b"]),
    (
        "GOVC_URL",
        "--govc-url",
        &["", "ftp://vc/sdk", "https://u:pw@vc/sdk"],
    ),
    ("GOVC_INSECURE", "--govc-insecure", &["maybe"]),
    (
        "VC_RECONNECT_TIMEOUT",
        "--vc-reconnect-timeout",
        &["-1", "x"],
    ),
    ("GUEST_FILES_TTL", "--guest-files-ttl", &["-1", "x"]),
];

#[test]
fn every_controller_tunable_refused_in_flags_and_env() {
    // No namespace needed: nothing may be contacted. GOVC_URL points at a closed port, so a
    // value that slipped through would fail later with a different message.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/sdk", closed.local_addr().unwrap());
    drop(closed);
    let creds = Credentials::test();
    let mut cases = 0;
    let mut failures = Vec::new();
    for (name, flag, values) in CONTROLLER_TUNABLES {
        for value in *values {
            for via_flag in [true, false] {
                let case = format!(
                    "{name}={value:?} via {}",
                    if via_flag { "flag" } else { "env" }
                );
                let mut c = ctl::command(&url, &creds, None);
                c.arg("run").env("VM_NAME", "vm-a");
                if via_flag {
                    c.arg(format!("{flag}={value}"));
                } else {
                    c.env(name, value);
                }
                let out = c.output().unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                let code = out.status.code().unwrap_or(-1);
                if code != 2 {
                    failures.push(format!("{case}: exit {code}: {text}"));
                } else if !(text.contains(name) || text.contains(flag)) {
                    failures.push(format!("{case}: names neither {name} nor {flag}: {text}"));
                } else if text.contains("cannot reach vCenter") {
                    failures.push(format!("{case}: contacted vCenter: {text}"));
                }
                assert!(
                    !creds.leaked_in(&text),
                    "{case}: a secret in the output:\n{text}"
                );
                cases += 1;
            }
        }
    }
    assert_all_refused(&failures, cases, "controller");
}
