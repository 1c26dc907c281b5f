//! The agent's validated configuration. The fault's tunables, their defaults, limits and
//! messages are the settings contract's (`reset_common::settings`, shared with the
//! controller); this module owns the config file (reading it safely, its schema being the
//! contract's `RawSettings`) and the shape the runtime reads (`Config`). Raw values
//! (flags/environment, then the config file, then defaults) are merged and checked here;
//! nothing downstream re-validates.
use std::{fs, io::Read, os::unix::fs::MetadataExt, path::Path, time::Duration};

use reset_common::settings::{self, FaultSettings, SettingError};
pub use reset_common::settings::{Mode, RawSettings, Selection, Stream, Toxicity, Unit};

/// The agent's name for [`Mode`]: what was asked for, not what ran.
pub use reset_common::settings::Mode as ModeRequest;

/// Interface `cleanup` looks at when none is given.
pub const DEFAULT_INTERFACE: &str = settings::NETWORK_INTERFACE.default;

/// Largest config file read: it holds a dozen keys.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Why a configuration was refused. All of these are usage errors (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A tunable out of range or malformed (the contract's message).
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("cannot read config file {path}: {source}")]
    FileRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {path} is not valid: {message}; keys are the flags in snake_case, e.g. toxicity = 50"
    )]
    FileSyntax { path: String, message: String },
    #[error(
        "config file {path} is {why}: fix its ownership/mode (chmod 600, owned by the user running the agent)"
    )]
    FileUnsafe { path: String, why: &'static str },
    #[error("config file {path} is larger than 64 KiB; it holds a dozen keys")]
    FileTooLarge { path: String },
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub target_port: u16,
    pub proxy_port: u16,
    pub interface: String,
    pub toxicity: Toxicity,
    pub reset_timeout: Duration,
    pub duration: Duration,
    pub ramp: Duration,
    pub stream: Stream,
    pub selection: Selection,
    pub mode: ModeRequest,
    pub unit: Unit,
}

impl Config {
    /// Merged flags/environment over the config file, checked by the settings contract
    /// (defaults for what is missing).
    pub fn resolve(raw: RawSettings) -> Result<Config, ConfigError> {
        let f = FaultSettings::resolve(&raw)?;
        let ramp = settings::ramp_time(raw.ramp_time.as_deref())?;
        Ok(Config {
            target_port: f.target_service_port,
            proxy_port: f.proxy_port,
            interface: f.network_interface,
            toxicity: f.toxicity,
            reset_timeout: f.reset_timeout,
            duration: f.total_chaos_duration,
            ramp,
            stream: f.stream,
            selection: f.selection,
            mode: f.mode,
            unit: f.unit,
        })
    }
}

/// Reads a config file, refusing one that others could have written. The checks look at the
/// opened file itself, and at most 64 KiB are read even when the size is not known up front
/// (a pipe such as `--config <(...)`, a file still growing).
pub fn read_file(path: &Path) -> Result<RawSettings, ConfigError> {
    let shown = path.display().to_string();
    let read_error = |source| ConfigError::FileRead {
        path: shown.clone(),
        source,
    };
    let file = fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::FileTooLarge { path: shown });
    }
    if meta.mode() & 0o002 != 0 {
        return Err(ConfigError::FileUnsafe {
            path: shown,
            why: "world-writable",
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(ConfigError::FileUnsafe {
            path: shown,
            why: "owned by another user",
        });
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::FileTooLarge { path: shown });
    }
    parse_file(&shown, &text)
}

/// The agent's parser of its config file: TOML with the contract's keys, nothing else.
pub fn parse_file(path: &str, text: &str) -> Result<RawSettings, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::FileSyntax {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
mod tests;
