//! The order of install and teardown on every exit path, with fakes that record what was done
//! to them: the window's end, a stop (signal or deadline) during the ramp, the window or the
//! drain, and an error at each step.
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use tokio::sync::watch;

use super::{
    Ending, Inputs, Progress, RunError, Stop,
    parts::DataStats,
    parts::{BoxFuture, DataPath, Listeners, Observe, Parts, Steer},
    run, status,
};
use crate::{
    config::{Config, RawSettings},
    ebpf::Counters,
    host::HostFacts,
    nft::{NftError, RedirectSpec, Steering},
};

type Log = Arc<Mutex<Vec<&'static str>>>;

fn note(log: &Log, what: &'static str) {
    log.lock().unwrap().push(what);
}

/// Records window changes, the final counter read (reads while the window is open are the
/// live progress, not recorded) and the detach.
struct FakeObserve {
    log: Log,
    open: bool,
}
impl Observe for FakeObserve {
    fn set_window(&mut self, open: bool) -> Result<(), String> {
        self.open = open;
        note(&self.log, if open { "window open" } else { "window close" });
        Ok(())
    }
    fn counters(&self) -> Result<Counters, String> {
        if !self.open {
            note(&self.log, "read counters");
        }
        Ok(Counters::default())
    }
    fn flow_delays_ns(&self) -> Vec<u64> {
        Vec::new()
    }
    fn log_records(&self) -> u64 {
        0
    }
    fn detach(self: Box<Self>) -> BoxFuture<bool> {
        note(&self.log, "detach");
        Box::pin(async { true })
    }
}

struct FakeSteer(Log);
impl Steer for FakeSteer {
    fn steering(&self) -> Steering {
        Steering::Tproxy
    }
    fn owned(&self) -> bool {
        true
    }
    fn fallbacks(&self) -> Vec<String> {
        Vec::new()
    }
    fn rule_text(&self) -> String {
        "fake".into()
    }
    fn stop_steering(&mut self) -> Result<(), String> {
        note(&self.0, "stop steering");
        Ok(())
    }
    fn remove(self: Box<Self>) -> Result<(), String> {
        note(&self.0, "remove table");
        Ok(())
    }
}

struct FakeData {
    log: Log,
    held: Arc<AtomicU64>,
}
impl DataPath for FakeData {
    fn held(&self) -> u64 {
        self.held.load(Relaxed)
    }
    fn stats(&self) -> DataStats {
        DataStats::default()
    }
    fn abort(&self) {
        note(&self.log, "reset held now");
        self.held.store(0, Relaxed);
    }
    fn finish(self: Box<Self>) -> BoxFuture<(DataStats, Option<String>)> {
        note(&self.log, "end data path");
        Box::pin(async { (DataStats::default(), None) })
    }
}

/// Fails at the named step (`check`, `lock`, `bind`, `observe`, `steer`, `data`), if any.
struct FakeParts {
    log: Log,
    fail_at: Option<&'static str>,
    held: Arc<AtomicU64>,
}

impl FakeParts {
    fn new(fail_at: Option<&'static str>, held: u64) -> FakeParts {
        FakeParts {
            log: Log::default(),
            fail_at,
            held: Arc::new(AtomicU64::new(held)),
        }
    }
    fn step(&self, what: &'static str) -> bool {
        note(&self.log, what);
        self.fail_at == Some(what)
    }
    fn log(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().clone()
    }
}

impl Parts for FakeParts {
    fn check(&self, _: &Config, _: &HostFacts) -> Result<(), RunError> {
        if self.step("check") {
            return Err(RunError::Privilege { cap: "CAP_FAKE" });
        }
        Ok(())
    }
    fn lock(&self, _: &Config, _: status::Shared) -> Result<Box<dyn Send>, RunError> {
        if self.step("lock") {
            return Err(RunError::UnsafePath("fake".into()));
        }
        Ok(Box::new(()))
    }
    fn remove_stale(&self, _: &Config) -> Vec<String> {
        Vec::new()
    }
    fn bind(&self, _: &Config) -> Result<Listeners, RunError> {
        if self.step("bind") {
            return Err(RunError::PortInUse {
                port: 1,
                owner: "fake".into(),
            });
        }
        Ok(Vec::new())
    }
    fn observe(
        &self,
        _: &Config,
        _: &HostFacts,
        _: &Listeners,
    ) -> Result<Box<dyn Observe>, String> {
        if self.step("attach programs") {
            return Err("fake: no eBPF".into());
        }
        Ok(Box::new(FakeObserve {
            log: self.log.clone(),
            open: false,
        }))
    }
    fn steer(&self, _: &RedirectSpec, _: &HostFacts) -> Result<Box<dyn Steer>, NftError> {
        if self.step("install table") {
            return Err(NftError::ReadBack("fake"));
        }
        Ok(Box::new(FakeSteer(self.log.clone())))
    }
    fn data_path(
        &self,
        _: &Config,
        _: Listeners,
        _: Option<&mut (dyn Observe + 'static)>,
        _: Option<crate::metrics::Metrics>,
    ) -> Result<Box<dyn DataPath>, RunError> {
        if self.step("start data path") {
            return Err(RunError::Requests(std::io::Error::other("fake")));
        }
        Ok(Box::new(FakeData {
            log: self.log.clone(),
            held: self.held.clone(),
        }))
    }
    fn verify(&self, _: &Config) -> bool {
        note(&self.log, "verify");
        true
    }
}

struct NoProgress;
impl Progress for NoProgress {
    fn step(&self, _: &str) {}
    fn tick(&self, _: &status::Counts, _: u64) {}
}

fn inputs(mode: &str, ramp: &str) -> Inputs {
    let cfg = Config::resolve(RawSettings {
        total_chaos_duration: Some("10".into()),
        reset_timeout: Some("100".into()),
        ramp_time: Some(ramp.into()),
        mode: Some(mode.into()),
        ..RawSettings::default()
    })
    .expect("valid");
    Inputs {
        cfg,
        host: HostFacts::read(None, false),
        report_path: None,
        metrics_addr: None,
    }
}

/// Runs the lifecycle against `parts`; `stop_after` sends a stop that many seconds in.
async fn drive(
    parts: &FakeParts,
    mode: &str,
    ramp: &str,
    stop_after: Option<(u64, Stop)>,
) -> Result<super::Outcome, RunError> {
    let (tx, rx) = watch::channel(None);
    if let Some((secs, why)) = stop_after {
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            let _ = tx.send(Some(why));
            std::future::pending::<()>().await;
        });
    } else {
        // Keep the sender alive: nobody stops this run.
        std::mem::forget(tx);
    }
    run(inputs(mode, ramp), parts, rx, &NoProgress).await
}

const INSTALL: [&str; 6] = [
    "check",
    "lock",
    "bind",
    "attach programs",
    "install table",
    "start data path",
];

const TEARDOWN: [&str; 5] = [
    "end data path",
    "remove table",
    "read counters",
    "detach",
    "verify",
];

fn expect(parts: &[&[&'static str]]) -> Vec<&'static str> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

#[tokio::test(start_paused = true)]
async fn window_end_tears_down_in_order() {
    let parts = FakeParts::new(None, 0);
    let out = drive(&parts, "kernel", "0", None).await.expect("runs");
    assert_eq!(out.ending, Ending::Completed);
    assert_eq!(
        parts.log(),
        expect(&[&INSTALL, &["window open", "window close"], &TEARDOWN])
    );
}

#[tokio::test(start_paused = true)]
async fn userspace_mode_stops_steering_then_tears_down() {
    let parts = FakeParts::new(None, 0);
    let out = drive(&parts, "userspace", "0", None).await.expect("runs");
    assert_eq!(out.ending, Ending::Completed);
    assert_eq!(
        parts.log(),
        expect(&[
            &["check", "lock", "bind", "install table", "start data path"],
            &["stop steering", "end data path", "remove table", "verify"],
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_signal_in_the_window_resets_held_at_once_then_tears_down() {
    let parts = FakeParts::new(None, 3);
    let out = drive(&parts, "kernel", "0", Some((2, Stop::Signal)))
        .await
        .expect("runs");
    assert_eq!(out.ending, Ending::Stopped(Stop::Signal));
    assert!(out.report.aborted);
    assert_eq!(
        parts.log(),
        expect(&[
            &INSTALL,
            &["window open", "window close", "reset held now"],
            &TEARDOWN
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_window_like_a_signal() {
    let parts = FakeParts::new(None, 0);
    let out = drive(&parts, "kernel", "0", Some((5, Stop::Deadline)))
        .await
        .expect("runs");
    assert_eq!(out.ending, Ending::Stopped(Stop::Deadline));
    assert_eq!(
        parts.log(),
        expect(&[
            &INSTALL,
            &["window open", "window close", "reset held now"],
            &TEARDOWN
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn held_connections_are_drained_before_the_table_goes() {
    // Held connections never reach their reset by themselves here: the drain waits
    // RESET_TIMEOUT + grace, then resets them, then the teardown runs.
    let parts = FakeParts::new(None, 2);
    let out = drive(&parts, "kernel", "0", None).await.expect("runs");
    assert_eq!(out.ending, Ending::Completed);
    assert_eq!(
        parts.log(),
        expect(&[
            &INSTALL,
            &["window open", "window close", "reset held now"],
            &TEARDOWN
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_signal_in_the_drain_resets_at_once() {
    let parts = FakeParts::new(None, 2);
    let out = drive(&parts, "kernel", "0", Some((11, Stop::Signal)))
        .await
        .expect("runs");
    assert_eq!(out.ending, Ending::Stopped(Stop::Signal));
    assert_eq!(
        parts.log(),
        expect(&[
            &INSTALL,
            &["window open", "window close", "reset held now"],
            &TEARDOWN
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_signal_in_the_ramp_installs_nothing() {
    let parts = FakeParts::new(None, 0);
    let out = drive(&parts, "kernel", "5", Some((1, Stop::Signal)))
        .await
        .expect("runs");
    assert_eq!(out.ending, Ending::Stopped(Stop::Signal));
    assert!(out.report.aborted);
    assert_eq!(parts.log(), ["check", "lock", "bind", "verify"]);
}

#[tokio::test(start_paused = true)]
async fn an_error_at_each_step_removes_what_was_installed_in_order() {
    let cases: [(&str, &[&str]); 6] = [
        ("check", &["check"]),
        ("lock", &["check", "lock"]),
        ("bind", &["check", "lock", "bind"]),
        (
            "attach programs",
            &["check", "lock", "bind", "attach programs", "verify"],
        ),
        (
            "install table",
            &[
                "check",
                "lock",
                "bind",
                "attach programs",
                "install table",
                "read counters",
                "detach",
                "verify",
            ],
        ),
        (
            "start data path",
            &[
                "check",
                "lock",
                "bind",
                "attach programs",
                "install table",
                "start data path",
                "remove table",
                "read counters",
                "detach",
                "verify",
            ],
        ),
    ];
    for (step, want) in cases {
        let parts = FakeParts::new(Some(step), 0);
        let got = drive(&parts, "kernel", "0", None).await;
        assert!(got.is_err(), "a failing {step} fails the run");
        assert_eq!(parts.log(), want, "failing at {step}");
    }
}

#[tokio::test(start_paused = true)]
async fn auto_mode_falls_back_to_userspace_when_the_programs_cannot_attach() {
    let parts = FakeParts::new(Some("attach programs"), 0);
    let out = drive(&parts, "auto", "0", None).await.expect("runs");
    assert_eq!(out.report.mode, "userspace");
    assert_eq!(
        parts.log(),
        expect(&[
            &[
                "check",
                "lock",
                "bind",
                "attach programs",
                "install table",
                "start data path"
            ],
            &["stop steering", "end data path", "remove table", "verify"],
        ])
    );
}
