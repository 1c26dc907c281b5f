//! The config file and the mapping onto `Config`; the tunables' own rules are tested with the
//! settings contract (reset-common).

use super::*;

#[test]
fn defaults_match_the_documentation() {
    let c = Config::resolve(RawSettings::default()).unwrap();
    assert_eq!((c.target_port, c.proxy_port), (80, 8080));
    assert_eq!(c.interface, "ens160");
    assert_eq!(c.toxicity.ppm(), 1_000_000);
    assert_eq!(c.reset_timeout, Duration::from_millis(2000));
    assert_eq!(c.duration, Duration::from_secs(30));
    assert_eq!(c.ramp, Duration::ZERO);
    assert_eq!(
        (c.stream, c.selection, c.mode),
        (Stream::Downstream, Selection::Random, ModeRequest::Auto)
    );
}

#[test]
fn every_field_comes_from_its_own_key() {
    let r = parse_file(
        "x",
        "target_service_port = 81\nproxy_port = 8081\nnetwork_interface = \"eth1\"\n\
         toxicity = \"50%\"\nreset_timeout = 300\ntotal_chaos_duration = 7\nramp_time = 2\n\
         stream = \"upstream\"\nselection = \"exact\"\nmode = \"userspace\"\n",
    )
    .unwrap();
    let c = Config::resolve(r).unwrap();
    assert_eq!((c.target_port, c.proxy_port), (81, 8081));
    assert_eq!(c.interface, "eth1");
    assert_eq!(c.toxicity.ppm(), 500_000);
    assert_eq!(c.reset_timeout, Duration::from_millis(300));
    assert_eq!(
        (c.duration, c.ramp),
        (Duration::from_secs(7), Duration::from_secs(2))
    );
    assert_eq!(
        (c.stream, c.selection, c.mode),
        (Stream::Upstream, Selection::Exact, ModeRequest::Userspace)
    );
}

#[test]
fn bad_values_and_unknown_keys_are_usage_errors() {
    let r = parse_file("x", "ramp_time = -1").unwrap();
    let msg = Config::resolve(r).unwrap_err().to_string();
    assert!(msg.starts_with("RAMP_TIME must be"), "{msg}");
    let r = parse_file("x", "toxicity = 101").unwrap();
    assert!(matches!(
        Config::resolve(r),
        Err(ConfigError::Setting(SettingError::Invalid {
            name: "TOXICITY",
            ..
        }))
    ));
    let e = parse_file("agent.toml", "toxic = 3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("toxic") && e.contains("agent.toml"), "{e}");
    assert!(parse_file("x", "toxicity = ").is_err());
}

/// Inputs the agent_config fuzz target found wrongly accepted, crashing or hanging: each
/// must now be a usage error.
#[test]
fn fuzz_regressions_are_usage_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/fuzz_regressions");
    let mut seen = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let shown = path.display().to_string();
        let result = parse_file(&shown, &text).and_then(Config::resolve);
        assert!(result.is_err(), "{shown} was accepted: {result:?}");
        seen += 1;
    }
    assert!(seen > 0, "no inputs in {}", dir.display());
}

#[test]
fn config_file_read_is_bounded() {
    let dir = std::env::temp_dir().join(format!("reset-agent-config-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.toml");
    fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
    assert!(matches!(
        read_file(&big),
        Err(ConfigError::FileTooLarge { .. })
    ));
    // A pipe has no size up front: the read itself must stop.
    let fifo = dir.join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let chunk = vec![b'#'; 4096];
            // Ends with EPIPE once the reader has had enough and closed its end.
            while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        })
    };
    assert!(matches!(
        read_file(&fifo),
        Err(ConfigError::FileTooLarge { .. })
    ));
    writer.join().unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_win_over_file() {
    let flags = RawSettings {
        toxicity: Some("10".into()),
        ..RawSettings::default()
    };
    let file = parse_file("x", "toxicity = 90\nproxy_port = 9090\n").unwrap();
    let c = Config::resolve(flags.or(file)).unwrap();
    assert_eq!(c.toxicity.ppm(), 100_000);
    assert_eq!(c.proxy_port, 9090);
}
