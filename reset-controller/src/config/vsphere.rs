//! Where vCenter is, which VMs, and how to log in to both: URL, users, the two secrets
//! (environment or file, never a flag), the VM list and the agent binary to upload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use crate::secret::Secret;
use crate::vcenter::{ConnectOptions, Reconnect, client::sdk_url};

/// The environment variables secrets are read from (when no password file is given).
pub const SECRET_VARS: [&str; 2] = [GOVC_PASSWORD, VM_PASSWORD];
const GOVC_PASSWORD: &str = "GOVC_PASSWORD";
const VM_PASSWORD: &str = "VM_PASSWORD";
/// The highest VC_CONCURRENCY accepted: more requests at once than this only queue up in
/// vCenter (its guest-operations and file-transfer services are shared by every client).
pub const MAX_CONCURRENCY: u64 = 64;

/// vCenter as given.
#[derive(Debug, Clone, Default)]
pub struct VcenterInputs {
    /// GOVC_URL.
    pub url: String,
    /// GOVC_USERNAME.
    pub user: String,
    /// GOVC_PASSWORD_FILE (else GOVC_PASSWORD is read).
    pub password_file: Option<PathBuf>,
    /// GOVC_INSECURE.
    pub insecure: bool,
    /// GOVC_TLS_CA_CERTS.
    pub ca_certs: Option<PathBuf>,
    /// VC_RECONNECT_TIMEOUT, s.
    pub reconnect_timeout_s: u64,
    /// VC_CONCURRENCY.
    pub concurrency: u64,
}

/// Where vCenter is and who we are there.
#[derive(Debug, Clone)]
pub struct VcenterSettings {
    /// URL and TLS policy.
    pub connect: ConnectOptions,
    /// GOVC_USERNAME.
    pub user: String,
    /// GOVC_PASSWORD.
    pub password: Secret,
    /// VC_RECONNECT_TIMEOUT: how long calls ride out vCenter going away.
    pub reconnect: Reconnect,
    /// VC_CONCURRENCY: the most vCenter requests (SOAP calls and file transfers) in flight at
    /// once, over all VMs of the run.
    pub concurrency: usize,
}

impl VcenterSettings {
    /// Check GOVC_URL and VC_CONCURRENCY, and read GOVC_PASSWORD from the environment or the
    /// file.
    pub fn resolve(i: &VcenterInputs) -> Result<VcenterSettings, ConfigError> {
        sdk_url(&i.url).map_err(ConfigError::GovcUrl)?;
        let concurrency = super::check_range(
            "VC_CONCURRENCY",
            i.concurrency,
            1,
            MAX_CONCURRENCY,
            "a whole number of requests from 1 to 64",
        )?;
        Ok(VcenterSettings {
            connect: ConnectOptions {
                url: i.url.clone(),
                insecure: i.insecure,
                ca_certs: i.ca_certs.clone(),
            },
            user: i.user.clone(),
            password: read_secret(GOVC_PASSWORD, i.password_file.as_deref())?,
            reconnect: Reconnect {
                budget: Duration::from_secs(i.reconnect_timeout_s),
            },
            concurrency: usize::try_from(concurrency).unwrap_or(1),
        })
    }
}

/// The VMs and their guest login as given.
#[derive(Debug, Clone, Default)]
pub struct TargetInputs {
    /// VM_NAME, comma-separated.
    pub vm_names: String,
    /// VM_USER_NAME: required, no default.
    pub user: Option<String>,
    /// VM_PASSWORD_FILE (else VM_PASSWORD is read).
    pub password_file: Option<PathBuf>,
    /// AGENT [default: reset-agent beside this program].
    pub agent: Option<PathBuf>,
    /// GUEST_FILES_TTL, s.
    pub guest_files_ttl_s: u64,
}

/// Which VMs and how to log in to their guests.
#[derive(Debug, Clone)]
pub struct Targets {
    /// VM_NAME, split on commas, in order, without duplicates.
    pub vms: Vec<String>,
    /// VM_USER_NAME.
    pub guest_user: String,
    /// VM_PASSWORD.
    pub guest_password: Secret,
    /// The reset-agent binary to upload.
    pub agent: PathBuf,
    /// GUEST_FILES_TTL: when the guest-side janitor removes an orphaned run's files.
    pub guest_files_ttl: Duration,
}

impl Targets {
    /// Check the VM list, the guest user and the agent binary; read VM_PASSWORD from the
    /// environment or the file.
    pub fn resolve(i: &TargetInputs) -> Result<Targets, ConfigError> {
        let agent = match &i.agent {
            Some(p) => p.clone(),
            None => crate::agent_binary::default_agent(
                &std::env::current_exe().map_err(ConfigError::NoOwnPath)?,
            )
            .map_err(ConfigError::NoPortableAgent)?,
        };
        if !agent.is_file() {
            return Err(ConfigError::NoAgent(agent.display().to_string()));
        }
        let guest_user = match i.user.as_deref() {
            Some(u) if !u.trim().is_empty() => u.to_string(),
            _ => return Err(ConfigError::NoGuestUser),
        };
        Ok(Targets {
            vms: parse_vm_names(&i.vm_names)?,
            guest_user,
            guest_password: read_secret(VM_PASSWORD, i.password_file.as_deref())?,
            agent,
            guest_files_ttl: Duration::from_secs(i.guest_files_ttl_s),
        })
    }
}

/// Split VM_NAME on commas; trims, drops duplicates, rejects empty items.
pub fn parse_vm_names(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for part in raw.split(',') {
        let name = part.trim();
        if name.is_empty() {
            return Err(ConfigError::NoVms(raw.to_string()));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// A secret from a file (first line, trailing newline removed), else from `env`.
pub fn read_secret(env: &'static str, file: Option<&Path>) -> Result<Secret, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::PasswordFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let line = text.lines().next().unwrap_or("");
        return Ok(Secret::new(line));
    }
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(ConfigError::Missing(env)),
    }
}
