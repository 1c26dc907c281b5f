//! The controller against the simulator: every failure a user can hit before the
//! agent runs gives a clear message, a failed row and a non-zero exit, and
//! nothing is left in the guest. The simulator's VMs run the stand-in agent on this host.

use std::process::Command;
use std::time::Duration;

use reset_tests::{
    ctl::{self, run_bounded},
    fake_agent,
    sim::{Credentials, Vcsim},
};

const LIMIT: Duration = Duration::from_secs(30);

fn run(sim: &Vcsim, vms: &str, extra_env: &[(&str, &str)]) -> (i32, String, String) {
    let agent = fake_agent();
    let mut c = sim.controller(&[
        "run",
        "--vm-name",
        vms,
        "--agent",
        agent.to_str().unwrap(),
        "--total-chaos-duration",
        "1",
    ]);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let out = run_bounded(c, LIMIT);
    (out.code().unwrap_or(-1), out.stdout, out.stderr)
}

#[test]
fn wrong_guest_password_is_clear_and_uploads_nothing() {
    let sim = Vcsim::builder().host_vm("web-01").start();
    let (code, out, err) = run(&sim, "web-01", &[("VM_PASSWORD", "not-the-password")]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "web-01: guest login failed for user root on VM web-01: check VM_USER_NAME/VM_PASSWORD"
        ),
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap().starts_with("web-01  failed"),
        "{out}"
    );
    assert_eq!(
        sim.guest_tmp.entries(),
        Vec::<String>::new(),
        "nothing may be uploaded"
    );
    assert!(!err.contains("not-the-password") && !out.contains("not-the-password"));
}

#[test]
fn unknown_and_ambiguous_vm_names_are_clear() {
    let sim = Vcsim::builder()
        .host_vm("web-01")
        .host_vm("twin")
        .host_vm("twin")
        .start();
    let (code, out, _) = run(&sim, "nope,twin", &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("nope: no VM named nope in vCenter inventory: check VM_NAME"),
        "{out}"
    );
    assert!(
        out.contains(
            "twin: 2 VMs are named twin (vm-2, vm-3): VM names must be unique; rename one"
        ),
        "{out}"
    );
    assert_eq!(sim.guest_tmp.entries(), Vec::<String>::new());
}

#[test]
fn powered_off_and_tools_not_running_are_clear() {
    let sim = Vcsim::builder()
        .host_vm("off-01")
        .powered_off("off-01")
        .host_vm("notools-01")
        .tools_not_running("notools-01")
        .start();
    let (code, out, _) = run(&sim, "off-01,notools-01", &[]);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "off-01: VM off-01 is poweredOff, guest operations need it poweredOn: power it on first"
        ),
        "{out}"
    );
    assert!(out.contains("notools-01: VMware Tools is not running in VM notools-01 (toolsRunningStatus guestToolsNotRunning)"), "{out}");
}

#[test]
fn one_bad_vm_does_not_stop_the_others() {
    let sim = Vcsim::builder()
        .host_vm("web-01")
        .host_vm("off-01")
        .powered_off("off-01")
        .start();
    let (code, out, err) = run(&sim, "web-01,off-01", &[]);
    assert_eq!(code, 1, "{out}{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[1].starts_with("web-01  ok"), "{out}");
    assert!(rows[2].starts_with("off-01  failed"), "{out}");
}

#[test]
fn wrong_vcenter_password_is_clear() {
    let sim = Vcsim::builder().host_vm("web-01").start();
    let (code, out, err) = run(&sim, "web-01", &[("GOVC_PASSWORD", "wrong-vc-pw")]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!(
            "vCenter login failed for user {}: check GOVC_USERNAME/GOVC_PASSWORD",
            sim.credentials().vc_user
        )),
        "{out}"
    );
    assert!(!out.contains("wrong-vc-pw") && !err.contains("wrong-vc-pw"));
}

#[test]
fn unreachable_govc_url_fails_within_10_s() {
    // A closed port (refused at once) and a port that accepts TCP but never answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    for url in [format!("https://{closed}/sdk"), format!("{silent_addr}")] {
        let agent = fake_agent();
        let mut c = ctl::command(&url, &Credentials::test(), None);
        c.args([
            "run",
            "--vm-name",
            "web-01",
            "--agent",
            agent.to_str().unwrap(),
        ]);
        let out = run_bounded(c, Duration::from_secs(20));
        let stdout = &out.stdout;
        assert_eq!(out.code(), Some(1), "{stdout}");
        assert!(
            out.took < Duration::from_secs(10),
            "{url}: took {:?}",
            out.took
        );
        assert!(
            stdout.contains("cannot reach vCenter at") && stdout.contains("check GOVC_URL"),
            "{stdout}"
        );
    }
    drop(silent);
}

#[test]
fn tls_is_verified_when_govc_insecure_is_false() {
    let sim = Vcsim::builder().host_vm("web-01").start();
    let (code, out, _) = run(&sim, "nope", &[("GOVC_INSECURE", "false")]);
    assert_eq!(code, 1);
    assert!(
        out.contains("TLS handshake with") && out.contains("GOVC_TLS_CA_CERTS"),
        "{out}"
    );
    let pem = &sim.cert;
    let (code, out, _) = run(
        &sim,
        "nope",
        &[
            ("GOVC_INSECURE", "false"),
            ("GOVC_TLS_CA_CERTS", pem.to_str().unwrap()),
        ],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("no VM named nope"),
        "verified TLS, logged in, looked up: {out}"
    );
}

#[test]
fn missing_secrets_and_bad_settings_are_usage_errors() {
    let sim = Vcsim::builder().host_vm("web-01").start();
    // `run` on web-01 as `change` leaves it: a usage error (exit 2); its stderr.
    let usage_error = |change: &dyn Fn(&mut Command)| {
        let agent = fake_agent();
        let mut c = sim.controller(&[
            "run",
            "--vm-name",
            "web-01",
            "--agent",
            agent.to_str().unwrap(),
        ]);
        change(&mut c);
        let out = run_bounded(c, LIMIT);
        assert_eq!(out.code(), Some(2), "{}", out.stderr);
        out.stderr
    };
    let err = usage_error(&|c| {
        c.env_remove("VM_PASSWORD");
    });
    assert!(err.contains("VM_PASSWORD is not set"), "{err}");
    // VM_USER_NAME has no default: a forgotten user name is not silently root.
    let err = usage_error(&|c| {
        c.env_remove("VM_USER_NAME");
    });
    assert!(
        err.contains("VM_USER_NAME is not set: set it (or --vm-user-name)"),
        "{err}"
    );
    assert_eq!(
        sim.guest_tmp.entries(),
        Vec::<String>::new(),
        "nothing contacted"
    );
    let err = usage_error(&|c| {
        c.env("TOXICITY", "150");
    });
    assert!(
        err.contains("TOXICITY must be a percentage from 0 to 100 (up to 4 decimals), got \"150\""),
        "{err}"
    );
    let c = sim.controller(&["run", "--vm-name", "web-01", "--vm-password", "x"]);
    let out = run_bounded(c, LIMIT);
    assert_eq!(out.code(), Some(2), "no password flag exists");
}

#[test]
fn non_root_guest_user_goes_through_sudo_or_fails_clearly() {
    let sim = Vcsim::builder()
        .host_vm("web-01")
        .guest_user("nobody")
        .start();
    let (code, out, err) = run(&sim, "web-01", &[("VM_USER_NAME", "nobody")]);
    if std::path::Path::new("/usr/bin/sudo").exists() {
        // As root on this host, `sudo -n` is allowed: the run gets through.
        assert_eq!(code, 0, "{out}{err}");
        assert!(err.contains("checking sudo -n"), "{err}");
    } else {
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            out.contains("web-01: VM_USER_NAME nobody is not root, so the agent must run through sudo, but VM web-01 has no /usr/bin/sudo"),
            "{out}"
        );
        assert_eq!(
            sim.guest_tmp.entries(),
            Vec::<String>::new(),
            "nothing uploaded"
        );
    }
}
