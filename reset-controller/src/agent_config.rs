//! The agent's config file (`agent.toml`), rendered from [`FaultSettings`] with the keys of
//! the settings contract (tests/tests/settings_contract.rs parses it back with the agent's
//! own parser). It holds fault tunables only: no vCenter or guest secret ever goes into it.

use serde::Serialize;

use crate::config::{FaultSettings, Mode, Selection, Stream, Toxicity, Unit};

#[derive(Serialize)]
struct AgentToml {
    target_service_port: u16,
    proxy_port: u16,
    network_interface: String,
    toxicity: Toxicity,
    reset_timeout: u64,
    total_chaos_duration: u64,
    ramp_time: u64,
    stream: Stream,
    selection: Selection,
    mode: Mode,
    unit: Unit,
}

/// Render the agent config. The controller waits RAMP_TIME itself, so the agent
/// gets `ramp_time = 0`.
pub fn render(f: &FaultSettings) -> String {
    let t = AgentToml {
        target_service_port: f.target_service_port,
        proxy_port: f.proxy_port,
        network_interface: f.network_interface.clone(),
        toxicity: f.toxicity,
        reset_timeout: u64::try_from(f.reset_timeout.as_millis()).unwrap_or(u64::MAX),
        total_chaos_duration: f.total_chaos_duration.as_secs(),
        ramp_time: 0,
        stream: f.stream,
        selection: f.selection,
        mode: f.mode,
        unit: f.unit,
    };
    // Serializing a flat struct of scalars cannot fail.
    toml::to_string(&t).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawSettings;

    #[test]
    fn renders_every_key() {
        let f = FaultSettings::resolve(&RawSettings {
            toxicity: Some("12.5".into()),
            selection: Some("exact".into()),
            ..RawSettings::default()
        })
        .unwrap();
        let s = render(&f);
        let v: toml::Table = toml::from_str(&s).unwrap();
        assert_eq!(v["target_service_port"].as_integer(), Some(80));
        assert_eq!(v["proxy_port"].as_integer(), Some(8080));
        assert_eq!(v["network_interface"].as_str(), Some("ens160"));
        assert_eq!(v["toxicity"].as_float(), Some(12.5));
        assert_eq!(v["reset_timeout"].as_integer(), Some(2000));
        assert_eq!(v["total_chaos_duration"].as_integer(), Some(30));
        assert_eq!(v["ramp_time"].as_integer(), Some(0));
        assert_eq!(v["stream"].as_str(), Some("downstream"));
        assert_eq!(v["selection"].as_str(), Some("exact"));
        assert_eq!(v["mode"].as_str(), Some("auto"));
        assert_eq!(v["unit"].as_str(), Some("request"));
        assert_eq!(v.len(), 11);
    }
}
