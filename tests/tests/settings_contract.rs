//! The settings contract between the controller and the agent (`reset_common::settings`):
//! the agent config the controller renders, for a spread of settings, is read back by the
//! agent's own parser (`reset_agent::config`) into exactly the fault the controller resolved;
//! the controller renders no key the agent does not know; and both binaries take every fault
//! tunable under the contract's flag and environment name, stating its default.
use std::collections::BTreeSet;
use std::time::Duration;

use reset_agent::config::{Config, parse_file};
use reset_common::settings::{
    FAULT_TUNABLES, FaultSettings, Mode, RawSettings, Selection, Stream, Unit,
};
use reset_controller::agent_config;
use reset_tests::help;

/// Values each tunable takes across the spread (all accepted by the contract).
const PORTS: &[&str] = &["1", "80", "443", "8080", "65535"];
const INTERFACES: &[&str] = &[
    "ens160",
    "eth0",
    "a",
    "fifteen-bytes-x",
    "eth\u{a0}0",
    "ééé",
];
const TOXICITIES: &[&str] = &["0", "0.0001", "12.5", "50%", "33.3333", "99.9999", "100"];
const TIMEOUTS: &[&str] = &["0", "1", "200", "2000", "3600000"];
const DURATIONS: &[&str] = &["1", "30", "3600", "604800"];

/// The `i`th setting of the spread: every value of every list is used, in changing company.
fn spread(i: usize) -> RawSettings {
    let pick =
        |list: &[&str], step: usize| list[(i * step + i / list.len()) % list.len()].to_string();
    let (target, proxy) = (pick(PORTS, 1), pick(PORTS, 3));
    RawSettings {
        target_service_port: Some(target.clone()),
        // Equal ports are refused before rendering; pick another proxy port then.
        proxy_port: Some(if proxy == target {
            "8081".into()
        } else {
            proxy
        }),
        network_interface: Some(pick(INTERFACES, 5)),
        toxicity: Some(pick(TOXICITIES, 2)),
        reset_timeout: Some(pick(TIMEOUTS, 7)),
        total_chaos_duration: Some(pick(DURATIONS, 3)),
        ramp_time: None,
        stream: Some(Stream::ALL[i % Stream::ALL.len()].to_string()),
        selection: Some(Selection::ALL[(i / 2) % Selection::ALL.len()].to_string()),
        mode: Some(Mode::ALL[(i / 3) % Mode::ALL.len()].to_string()),
        unit: Some(Unit::ALL[(i / 5) % Unit::ALL.len()].to_string()),
    }
}

#[test]
fn the_agent_reads_back_every_config_the_controller_renders() {
    let keys: BTreeSet<&str> = FAULT_TUNABLES.iter().map(|t| t.key).collect();
    for i in 0..210 {
        let fault = FaultSettings::resolve(&spread(i))
            .unwrap_or_else(|e| panic!("spread {i} is not valid: {e}"));
        let text = agent_config::render(&fault);
        // Only the contract's keys: an unknown one would also fail the agent's parser below.
        let table: toml::Table = toml::from_str(&text).unwrap();
        let rendered: BTreeSet<&str> = table.keys().map(String::as_str).collect();
        assert_eq!(rendered, keys, "rendered keys of spread {i}:\n{text}");
        let raw = parse_file("agent.toml", &text)
            .unwrap_or_else(|e| panic!("the agent refuses the controller's config: {e}\n{text}"));
        let c = Config::resolve(raw)
            .unwrap_or_else(|e| panic!("the agent refuses the controller's config: {e}\n{text}"));
        let back = (
            c.target_port,
            c.proxy_port,
            c.interface.as_str(),
            c.toxicity,
            c.reset_timeout,
            c.duration,
            c.stream,
            c.selection,
            c.mode,
            c.unit,
        );
        let sent = (
            fault.target_service_port,
            fault.proxy_port,
            fault.network_interface.as_str(),
            fault.toxicity,
            fault.reset_timeout,
            fault.total_chaos_duration,
            fault.stream,
            fault.selection,
            fault.mode,
            fault.unit,
        );
        assert_eq!(back, sent, "spread {i}:\n{text}");
        assert_eq!(
            c.ramp,
            Duration::ZERO,
            "the controller waits RAMP_TIME itself"
        );
    }
}

#[test]
fn both_binaries_take_every_fault_tunable_with_the_contracts_names_and_defaults() {
    for (bin, sub) in [("reset-agent", "run"), ("reset-controller", "run")] {
        let opts = help::options(bin, &[sub]);
        for t in FAULT_TUNABLES {
            let o = opts
                .iter()
                .find(|o| o.flag == t.flag())
                .unwrap_or_else(|| panic!("{bin} {sub} has no {}", t.flag()));
            assert_eq!(o.env.as_deref(), Some(t.env), "{bin} {sub} {}", t.flag());
            assert_eq!(
                o.default.as_deref(),
                Some(t.default),
                "{bin} {sub} {}: the default its --help states",
                t.flag()
            );
        }
    }
}
