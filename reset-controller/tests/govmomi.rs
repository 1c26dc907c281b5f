//! The controller's client against govmomi's vCenter simulator (Debian
//! golang-github-vmware-govmomi-dev, tests/go/govmomi-sim): a second, independent
//! vim25 implementation. Login, VM lookup and power/Tools state must work; guest
//! operations there need Docker (govmomi 0.24), so they must fail with a clear
//! GuestOperationsUnavailable message.
//!
//! Needs `go` (golang-go) and the govmomi sources in /usr/share/gocode; the test
//! builds tests/go/govmomi-sim itself unless GOVMOMI_SIM names a built binary.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reset_controller::secret::Secret;
use reset_controller::vcenter::{ConnectOptions, Guest, GuestAuth, Session, VcError, inventory};
use reset_tests::guard::Guard;

/// govmomi's simulator: on drop its stdin closes, so it removes its model directory, and it
/// is killed if it has not ended within 5 s.
struct GovSim {
    _child: Guard,
    url: String,
}

fn govmomi_sim() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> PathBuf {
    if let Some(p) = std::env::var_os("GOVMOMI_SIM") {
        return PathBuf::from(p);
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("govmomi-sim");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/go/govmomi-sim");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOFLAGS", "")
        .status()
        .unwrap_or_else(|e| panic!("cannot run `go` ({e}): install golang-go and golang-github-vmware-govmomi-dev (cargo xtask setup does)"));
    assert!(
        status.success(),
        "building tests/go/govmomi-sim failed: is golang-github-vmware-govmomi-dev installed?"
    );
    out
}

fn start() -> GovSim {
    let mut child = Guard::spawn(
        Command::new(govmomi_sim())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "govmomi-sim",
    )
    .stop_gently(Duration::from_secs(5));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    assert!(
        url.starts_with("https://127.0.0.1:"),
        "first line must be the URL: {url:?}"
    );
    GovSim { _child: child, url }
}

#[tokio::test]
async fn client_logs_in_finds_vms_and_reports_guest_ops_unavailable() {
    let sim = start();
    let opts = ConnectOptions {
        url: sim.url.clone(),
        insecure: true,
        ca_certs: None,
    };
    let session = Session::login(&opts, "user", "pass")
        .await
        .expect("login to govmomi's simulator");
    assert!(
        session.content().api_version.starts_with(char::is_numeric),
        "{:?}",
        session.content()
    );

    let names = vec![
        "DC0_H0_VM0".to_string(),
        "DC0_C0_RP0_VM1".to_string(),
        "no-such-vm".to_string(),
    ];
    let mut found = inventory::find_vms(&session, &names)
        .await
        .expect("RetrievePropertiesEx through a ContainerView");
    let vm = found
        .remove("DC0_H0_VM0")
        .unwrap()
        .expect("DC0_H0_VM0 exists");
    assert_eq!(vm.moref.kind, "VirtualMachine");
    assert_eq!(vm.power_state, "poweredOn");
    assert_eq!(vm.tools_running_status, "guestToolsNotRunning");
    let e = vm.check_ready().unwrap_err();
    assert!(
        e.to_string()
            .starts_with("VMware Tools is not running in VM DC0_H0_VM0"),
        "{e}"
    );
    assert!(found.remove("DC0_C0_RP0_VM1").unwrap().is_ok());
    let e = found.remove("no-such-vm").unwrap().unwrap_err();
    assert_eq!(
        e.to_string(),
        "no VM named no-such-vm in vCenter inventory: check VM_NAME"
    );

    let managers = inventory::guest_managers(&session)
        .await
        .expect("GuestOperationsManager properties");
    let guest = Guest::new(
        session.clone(),
        managers,
        vm,
        GuestAuth {
            user: "root".into(),
            password: Secret::new("pw"),
        },
    );
    match guest
        .upload(
            "/tmp/reset-agent",
            bytes::Bytes::from_static(b"#!/bin/sh\n"),
            0o755,
        )
        .await
    {
        Err(e @ VcError::GuestOperationsUnavailable { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("guest operations are unavailable on VM DC0_H0_VM0"),
                "{msg}"
            );
            assert!(msg.contains("VMware Tools must be running"), "{msg}");
        }
        other => panic!("expected GuestOperationsUnavailable, got {other:?}"),
    }
    session.logout().await;
}

#[tokio::test]
async fn wrong_password_is_invalid_login() {
    let sim = start();
    let opts = ConnectOptions {
        url: sim.url.clone(),
        insecure: true,
        ca_certs: None,
    };
    // govmomi's default accepts any non-empty user and password; an empty password fails.
    match Session::login(&opts, "user", "").await {
        Err(e @ VcError::InvalidLogin { .. }) => {
            assert!(e.to_string().contains("check GOVC_USERNAME/GOVC_PASSWORD"))
        }
        other => panic!("expected InvalidLogin, got {other:?}"),
    }
}
