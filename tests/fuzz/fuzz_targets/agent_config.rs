//! The agent's config file: any text must parse and validate to a Config or a usage error,
//! never a panic. What validation accepts must hold up: a toxicity prints back to the same
//! value, the bounds hold, and the interface is a name the kernel could have.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use reset_agent::config::{Config, RawSettings, Toxicity, parse_file};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = parse_file("fuzz.toml", text) {
        check(raw);
    }
    // The same text as a flag or environment value (they share one validator).
    check(RawSettings {
        toxicity: Some(text.to_owned()),
        network_interface: Some(text.to_owned()),
        ..RawSettings::default()
    });
});

fn check(raw: RawSettings) {
    if let Some(t) = raw.toxicity.as_deref().and_then(Toxicity::parse) {
        assert_eq!(
            Toxicity::parse(&t.to_string()),
            Some(t),
            "toxicity round trip"
        );
    }
    match Config::resolve(raw) {
        Ok(c) => {
            assert!(c.toxicity.ppm() <= 1_000_000);
            assert_ne!(c.target_port, c.proxy_port);
            assert!(c.duration >= Duration::from_secs(1));
            assert!(c.duration <= Duration::from_secs(7 * 24 * 3600));
            assert!(c.reset_timeout <= Duration::from_secs(3600));
            assert!(kernel_accepts(&c.interface), "accepted {:?}", c.interface);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// net/core/dev.c dev_valid_name(), transcribed: the oracle for NETWORK_INTERFACE.
fn kernel_accepts(name: &str) -> bool {
    const IFNAMSIZ: usize = 16;
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= IFNAMSIZ || name == "." || name == ".." {
        return false;
    }
    // A NUL would end the C string early: the kernel would see another name.
    !b.iter()
        .any(|&c| c == b'/' || c == b':' || c == 0 || matches!(c, b' ' | b'\t'..=b'\r'))
}
