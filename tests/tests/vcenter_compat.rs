//! Real vCenter details, end to end through the `vcsim` binary and the controller (issue 12):
//! the API version negotiated from the version document a vCenter 8.0.3 or 6.7 publishes (or
//! the fallback when there is none), shown by the SOAPAction of every call vcsim recorded;
//! servers refused before any guest operation (too old, free-license ESXi); /guestFile
//! transfers through the VM's ESXi host, trusted by the thumbprint vCenter records.
//! No root needed: the VM runs its programs on this host with a stand-in agent.

mod vcenter_sim;

use std::time::Duration;

use reset_tests::ctl::run_bounded;
use vcenter_sim::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A full run; returns the report and stderr, after checking it succeeded.
fn run_ok(sim: &Sim, extra: &[&'static str]) -> (serde_json::Value, String) {
    let out = run_bounded(sim.controller(&run_args(extra)), LIMIT);
    let (v, err) = (out.report(), out.stderr.clone());
    assert_eq!(out.status.code(), Some(0), "{v}\n{err}");
    assert_eq!(v["vms"][0]["status"], "ok", "{v}\n{err}");
    assert!(
        sim.guest_leftovers().is_empty(),
        "{:?}",
        sim.guest_leftovers()
    );
    (v, err)
}

/// Every SOAP call used `urn:vim25/<version>`; returns how many there were.
fn every_call_speaks(sim: &Sim, version: &str) -> usize {
    let calls = sim.calls();
    assert!(calls.len() >= 15, "a full run makes more calls: {calls:?}");
    let action = format!("urn:vim25/{version}");
    for (method, soap_action) in &calls {
        assert_eq!(
            soap_action.trim_matches('"'),
            action,
            "{method} spoke another version: {calls:?}"
        );
    }
    calls.len()
}

/// The version document was fetched from beside the SDK endpoint, first, and only there.
fn fetched_versions_document_first(sim: &Sim, status: u64) {
    let reqs = sim.requests();
    assert_eq!(
        reqs[0]["http"], "GET /sdk/vimServiceVersions.xml",
        "{reqs:?}"
    );
    assert_eq!(reqs[0]["status"], status);
    assert!(
        !reqs
            .iter()
            .any(|r| r["http"] == "GET /vimServiceVersions.xml"),
        "the document was looked for outside /sdk"
    );
}

fn calls_named(sim: &Sim) -> Vec<String> {
    sim.calls().into_iter().map(|(m, _)| m).collect()
}

#[test]
fn vcenter_8_0_3_document_negotiates_8_0_2_0_on_every_call() {
    let sim = Sim::start("v803", &[]);
    let (v, err) = run_ok(&sim, &[]);
    fetched_versions_document_first(&sim, 200);
    let n = every_call_speaks(&sim, "8.0.2.0");
    let vc = &v["vcenter"];
    assert_eq!(vc["negotiated"]["api_version"], "8.0.2.0", "{vc}");
    assert_eq!(vc["negotiated"]["source"], "document");
    assert!(
        vc["negotiated"]["reason"]
            .as_str()
            .unwrap()
            .contains("skipped uA046D008"),
        "{vc}"
    );
    assert_eq!(vc["about"]["version"], "8.0.3");
    assert_eq!(vc["about"]["build"], "69507950");
    assert_eq!(vc["about"]["api_type"], "VirtualCenter");
    assert_eq!(vc["about"]["name"], "VMware vCenter Server");
    assert!(
        err.contains("API version chosen") && err.contains("version=8.0.2.0"),
        "debug log of the choice missing:\n{err}"
    );
    assert!(!err.contains("falling back"), "{err}");
    eprintln!("vCenter 8.0.3 document: {n} calls, all with SOAPAction urn:vim25/8.0.2.0");
}

#[test]
fn vcenter_6_7_document_negotiates_6_7() {
    let sim = Sim::start("v67", &["--product", "vcenter-6.7"]);
    let (v, _) = run_ok(&sim, &[]);
    fetched_versions_document_first(&sim, 200);
    let n = every_call_speaks(&sim, "6.7");
    assert_eq!(v["vcenter"]["negotiated"]["api_version"], "6.7");
    assert_eq!(v["vcenter"]["negotiated"]["source"], "document");
    assert_eq!(v["vcenter"]["about"]["version"], "6.7.0");
    eprintln!("vCenter 6.7 document: {n} calls, all with SOAPAction urn:vim25/6.7");
}

#[test]
fn missing_document_warns_falls_back_and_says_so() {
    let sim = Sim::start("v404", &["--no-versions-doc"]);
    let (v, err) = run_ok(&sim, &[]);
    fetched_versions_document_first(&sim, 404);
    every_call_speaks(&sim, "6.7");
    let warn = err
        .lines()
        .find(|l| l.contains("WARN") && l.contains("falling back to vim25 6.7"))
        .unwrap_or_else(|| panic!("no warning about the fallback:\n{err}"));
    assert!(
        warn.contains("HTTP 404") && warn.contains("/sdk/vimServiceVersions.xml"),
        "{warn}"
    );
    let n = &v["vcenter"]["negotiated"];
    assert_eq!(n["api_version"], "6.7", "{n}");
    assert_eq!(n["source"], "fallback", "{n}");
    assert!(n["reason"].as_str().unwrap().contains("HTTP 404"), "{n}");
}

#[test]
fn too_old_server_is_refused_before_any_guest_operation() {
    // Its version document lists nothing newer than 4.1: refused before any SOAP call.
    let sim = Sim::start("old", &["--product", "vcenter-4.1"]);
    let out = run_bounded(sim.controller(&run_args(&[])), LIMIT);
    let (v, err) = (out.report(), out.stderr.clone());
    assert_eq!(out.status.code(), Some(1), "{v}\n{err}");
    let e = v["vms"][0]["error"].as_str().unwrap();
    assert!(
        e.contains("cannot run this fault")
            && e.contains("is 4.1")
            && e.contains("vSphere API 5.0 or newer"),
        "{e}"
    );
    assert!(calls_named(&sim).is_empty(), "{:?}", sim.calls());
    // Without a document, its about.apiVersion (4.1) refuses it before Login.
    let sim = Sim::start("old404", &["--product", "vcenter-4.1", "--no-versions-doc"]);
    let out = run_bounded(sim.controller(&run_args(&[])), LIMIT);
    let v = out.report();
    assert_eq!(out.status.code(), Some(1), "{v}");
    let e = v["vms"][0]["error"].as_str().unwrap();
    assert!(
        e.starts_with("VMware vCenter Server 4.1.0 build-258902 (reset-peer vcsim) (API 4.1) at https://127.0.0.1:")
            && e.contains("guest operations need vSphere API 5.0 or newer"),
        "{e}"
    );
    assert_eq!(
        calls_named(&sim),
        ["RetrieveServiceContent"],
        "credentials were sent"
    );
}

#[test]
fn free_license_esxi_is_refused_and_a_licensed_one_runs() {
    let sim = Sim::start(
        "esxfree",
        &["--product", "esxi-8.0.3", "--esxi-license", "esxBasic"],
    );
    let out = run_bounded(sim.controller(&run_args(&[])), LIMIT);
    let (v, err) = (out.report(), out.stderr.clone());
    assert_eq!(out.status.code(), Some(1), "{v}\n{err}");
    let e = v["vms"][0]["error"].as_str().unwrap();
    assert!(
        e.contains("VMware ESXi 8.0.3")
            && e.contains("free vSphere Hypervisor license")
            && e.contains("edition esxBasic")
            && e.contains("point GOVC_URL at the vCenter that manages this host"),
        "{e}"
    );
    let calls = calls_named(&sim);
    assert!(
        !calls
            .iter()
            .any(|m| m.ends_with("InGuest") || m == "CreateContainerView"),
        "refused only after guest work began: {calls:?}"
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("Logout"),
        "{calls:?}"
    );

    // A licensed standalone ESXi host: guest operations and `*` transfers work directly.
    let sim = Sim::start("esxeval", &["--product", "esxi-8.0.3"]);
    let (v, _) = run_ok(&sim, &[]);
    assert_eq!(v["vcenter"]["about"]["api_type"], "HostAgent");
    assert_eq!(v["vcenter"]["negotiated"]["api_version"], "8.0.2.0");
    let transfers: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r["http"].as_str().unwrap().ends_with("/guestFile"))
        .collect();
    assert_eq!(transfers.len(), 3, "{transfers:?}");
    assert!(
        transfers
            .iter()
            .all(|r| r["listener"] == "vcenter" && r["status"] == 200)
    );
}

/// The transfers of a run: (listener, method, status).
fn transfers(sim: &Sim) -> Vec<(String, String, u64)> {
    sim.requests()
        .iter()
        .filter(|r| r["http"].as_str().unwrap().ends_with(" /guestFile"))
        .map(|r| {
            (
                r["listener"].as_str().unwrap().to_string(),
                r["http"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn transfers_through_the_esxi_host_work_by_thumbprint() {
    // vCenter trusted through GOVC_TLS_CA_CERTS (its certificate only), GOVC_INSECURE=false;
    // the host's own self-signed certificate is in no CA: only its thumbprint can vouch.
    let sim = Sim::start("esxhost", &["--esx-host"]);
    let (_, err) = run_ok(&sim, &[]);
    let t = transfers(&sim);
    assert_eq!(
        t,
        [
            ("esx-host".into(), "PUT /guestFile".into(), 200),
            ("esx-host".into(), "PUT /guestFile".into(), 200),
            ("esx-host".into(), "GET /guestFile".into(), 200),
        ],
        "upload agent + config, download report, all at the ESXi host"
    );
    assert!(
        err.contains("host=esx-01.vcsim.invalid (HostSystem host-1) via=127.0.0.1 pinned=true"),
        "{err}"
    );
    let calls = calls_named(&sim);
    let lookups = calls
        .iter()
        .filter(|m| *m == "RetrievePropertiesEx")
        .count();
    assert_eq!(
        lookups, 4,
        "managers, VMs, then runtime.host and the host once: {calls:?}"
    );

    // No CA at all: vCenter over plain HTTP, the host still by thumbprint.
    let sim = Sim::start("esxhttp", &["--esx-host", "--plain-http"]);
    let mut c = sim.controller(&run_args(&[]));
    c.env_remove("GOVC_TLS_CA_CERTS");
    let out = run_bounded(c, LIMIT);
    let (v, err) = (out.report(), out.stderr.clone());
    assert_eq!(out.status.code(), Some(0), "{v}\n{err}");
    assert_eq!(transfers(&sim).len(), 3);
    assert!(
        transfers(&sim)
            .iter()
            .all(|(l, _, s)| l == "esx-host" && *s == 200)
    );
}

#[test]
fn a_wrong_thumbprint_fails_clearly_and_cleans_up() {
    let sim = Sim::start("esxwrong", &["--esx-host", "--esx-host-wrong-thumbprint"]);
    let out = run_bounded(sim.controller(&run_args(&[])), LIMIT);
    let (v, err) = (out.report(), out.stderr.clone());
    assert_eq!(out.status.code(), Some(1), "{v}\n{err}");
    let row = &v["vms"][0];
    assert_eq!(row["status"], "failed", "{row}");
    let e = row["error"].as_str().unwrap();
    assert!(
        e.contains("file transfer (upload ")
            && e.contains("ESXi host esx-01.vcsim.invalid (HostSystem host-1) presented a certificate with SHA-1 thumbprint")
            && e.contains("but vCenter records")
            && e.contains("reconnect the host in vCenter"),
        "{e}"
    );
    assert!(
        !e.contains("token="),
        "the transfer ticket leaked into the message: {e}"
    );
    assert!(
        transfers(&sim).is_empty(),
        "nothing may reach an unverified host"
    );
    assert_eq!(row["guest_files_removed"], true, "{row}");
    assert!(sim.guest_leftovers().is_empty());
}
