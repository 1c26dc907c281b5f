//! The simulator's state: configured VMs and users, sessions, views, file
//! transfer tickets and guest processes. One mutex, never held across an await.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::profile::Profile;
use crate::record::{Entry, RequestLog};
use crate::soap::{Fault, faults};

/// One simulated VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Inventory name (duplicates allowed, to test ambiguity).
    pub name: String,
    /// Network namespace its programs run in; `None` runs them on the host.
    pub netns: Option<String>,
    /// runtime.powerState is poweredOn.
    pub powered_on: bool,
    /// guest.toolsRunningStatus is guestToolsRunning.
    pub tools_running: bool,
}

/// What the simulator serves.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// VMs, in inventory order (ids vm-1, vm-2, ...).
    pub vms: Vec<VmSpec>,
    /// Accepted guest users and passwords.
    pub guest_users: Vec<(String, String)>,
    /// The accepted vCenter user; `None` accepts any non-empty user name.
    pub vc_user: Option<(String, String)>,
    /// The guests' temporary directory (CreateTemporaryDirectoryInGuest without a
    /// directoryPath); `/tmp` if `None`.
    pub tmp_dir: Option<PathBuf>,
    /// Where the guests' "VMware Tools" keep their process table (what Tools itself
    /// keeps inside a real guest): started programs and their exit codes survive a
    /// restart of the simulator. `$TMPDIR/vcsim-tools-<pid>` (this process only) if `None`.
    pub state_dir: Option<PathBuf>,
}

impl SimConfig {
    /// The guests' temporary directory.
    pub fn guest_tmp(&self) -> PathBuf {
        self.tmp_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    }

    /// The directory of the guests' process table.
    pub fn tools_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("vcsim-tools-{}", std::process::id()))
        })
    }
}

/// A pending /guestFile transfer.
#[derive(Debug, Clone)]
pub enum Transfer {
    /// PUT writes this file with this mode.
    Upload {
        /// Host path.
        path: PathBuf,
        /// Mode from the request's attributes.
        mode: Option<u32>,
        /// Declared size.
        size: u64,
    },
    /// GET reads this file.
    Download {
        /// Host path.
        path: PathBuf,
    },
}

/// A guest process started through StartProgramInGuest.
#[derive(Debug, Clone)]
pub struct Proc {
    /// pid.
    pub pid: i64,
    /// Program name.
    pub name: String,
    /// Command line as run.
    pub cmd_line: String,
    /// The guest user.
    pub owner: String,
    /// Start time.
    pub start: SystemTime,
    /// End time once exited.
    pub end: Option<SystemTime>,
    /// Exit code once exited.
    pub exit: Option<i32>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashSet<String>,
    views: HashSet<String>,
    transfers: HashMap<String, Transfer>,
    procs: HashMap<(usize, i64), Proc>,
    /// RetrievePropertiesEx results waiting for ContinueRetrievePropertiesEx, by token.
    pages: HashMap<String, Vec<String>>,
    counter: u64,
}

/// Shared simulator state.
#[derive(Debug, Clone)]
pub struct Sim {
    /// Configuration.
    pub cfg: Arc<SimConfig>,
    /// How it presents itself (product, version document, transfer host).
    pub profile: Arc<Profile>,
    log: Option<Arc<RequestLog>>,
    inner: Arc<Mutex<Inner>>,
    /// Requests being answered right now (SOAP calls and /guestFile transfers).
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

/// One request being answered; [`Arrival::count`] is how many were, itself included, when it
/// arrived (the request log's `in_flight`: its maximum is the client's peak concurrency).
#[derive(Debug)]
pub struct Arrival {
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Requests in flight when this one arrived, itself included.
    pub count: usize,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        self.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A fresh unguessable token.
pub fn token() -> String {
    let a = std::hash::RandomState::new().build_hasher().finish();
    let b = std::hash::RandomState::new().build_hasher().finish();
    format!("{a:016x}{b:016x}")
}

impl Sim {
    /// New state for `cfg`; the guests' process table is read back from
    /// [`SimConfig::tools_dir`] (programs started before a restart keep running and
    /// report their exits).
    pub fn new(cfg: SimConfig) -> Self {
        let procs = crate::process::load(&cfg.tools_dir());
        Self {
            cfg: Arc::new(cfg),
            profile: Arc::new(Profile::default()),
            log: None,
            inner: Arc::new(Mutex::new(Inner {
                procs,
                ..Inner::default()
            })),
            in_flight: Arc::default(),
        }
    }

    /// A request arrives; it counts as in flight until the [`Arrival`] drops.
    pub fn arrive(&self) -> Arrival {
        let count = self
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        Arrival {
            in_flight: self.in_flight.clone(),
            count,
        }
    }

    /// Present as `profile` (default: vCenter 8.0.3, transfers at `*`).
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = Arc::new(profile);
        self
    }

    /// Write every answered request to `path` (see [`crate::record`]).
    pub fn with_request_log(mut self, path: &std::path::Path) -> std::io::Result<Self> {
        self.log = Some(Arc::new(RequestLog::create(path)?));
        Ok(self)
    }

    /// Record one answered request, if a request log is kept.
    pub fn record(&self, e: &Entry<'_>) {
        if let Some(log) = &self.log {
            log.write(e);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Check vCenter credentials and open a session; returns its key.
    pub fn login(&self, user: &str, password: &str) -> Result<String, Fault> {
        let ok = match &self.cfg.vc_user {
            Some((u, p)) => u == user && p == password,
            None => !user.is_empty(),
        };
        if !ok {
            return Err(faults::invalid_login());
        }
        let key = token();
        self.lock().sessions.insert(key.clone());
        Ok(key)
    }

    /// Whether a session key is live.
    pub fn has_session(&self, key: &str) -> bool {
        self.lock().sessions.contains(key)
    }

    /// End a session.
    pub fn logout(&self, key: &str) {
        self.lock().sessions.remove(key);
    }

    /// Register a container view; returns its id.
    pub fn new_view(&self) -> String {
        let mut i = self.lock();
        i.counter += 1;
        let id = format!("session[{}]view-{}", &token()[..8], i.counter);
        i.views.insert(id.clone());
        id
    }

    /// Whether a view exists.
    pub fn has_view(&self, id: &str) -> bool {
        self.lock().views.contains(id)
    }

    /// Destroy a view.
    pub fn destroy_view(&self, id: &str) -> bool {
        self.lock().views.remove(id)
    }

    /// The VM index for a moref value `vm-N`.
    pub fn vm_index(&self, id: &str) -> Option<usize> {
        let n: usize = id.strip_prefix("vm-")?.parse().ok()?;
        (n >= 1 && n <= self.cfg.vms.len()).then(|| n - 1)
    }

    /// Guest credentials check.
    pub fn guest_login_ok(&self, user: &str, password: &str) -> bool {
        self.cfg
            .guest_users
            .iter()
            .any(|(u, p)| u == user && p == password)
    }

    /// Store a transfer; returns its token.
    pub fn add_transfer(&self, t: Transfer) -> String {
        let tok = token();
        self.lock().transfers.insert(tok.clone(), t);
        tok
    }

    /// Take a transfer (single use).
    pub fn take_transfer(&self, tok: &str) -> Option<Transfer> {
        self.lock().transfers.remove(tok)
    }

    /// Keep the rest of a paged result; returns its token.
    pub fn add_page(&self, rest: Vec<String>) -> String {
        let tok = token();
        self.lock().pages.insert(tok.clone(), rest);
        tok
    }

    /// The rest of a paged result (single use).
    pub fn take_page(&self, tok: &str) -> Option<Vec<String>> {
        self.lock().pages.remove(tok)
    }

    /// Record a started process.
    pub fn add_proc(&self, vm: usize, p: Proc) {
        self.lock().procs.insert((vm, p.pid), p);
    }

    /// Pick up exits the guests' supervisors recorded since the last look.
    fn refresh(&self, i: &mut Inner) {
        let dir = self.cfg.tools_dir();
        for ((vm, pid), p) in i.procs.iter_mut().filter(|(_, p)| p.exit.is_none()) {
            if let Some((end, code)) = crate::process::exit_of(&dir, *vm, *pid) {
                p.end = Some(end);
                p.exit = Some(code);
            }
        }
    }

    /// Processes of a VM: the given pids, or all if empty.
    pub fn procs(&self, vm: usize, pids: &[i64]) -> Vec<Proc> {
        let mut i = self.lock();
        self.refresh(&mut i);
        let mut v: Vec<Proc> = i
            .procs
            .iter()
            .filter(|((v, pid), _)| *v == vm && (pids.is_empty() || pids.contains(pid)))
            .map(|(_, p)| p.clone())
            .collect();
        v.sort_by_key(|p| p.pid);
        v
    }

    /// One process.
    pub fn proc(&self, vm: usize, pid: i64) -> Option<Proc> {
        let mut i = self.lock();
        self.refresh(&mut i);
        i.procs.get(&(vm, pid)).cloned()
    }
}
