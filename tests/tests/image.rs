//! `cargo xtask image`: the controller's OCI image with the agent inside, as built, and run
//! where podman can run it.
//!
//! - Layout (always): the index's one manifest, the config (entrypoint the controller, user
//!   65532, no secret in its environment, the version label) and exactly three layers, which
//!   hold the static controller (no dynamic loader; its `--version` runs here), the agent byte
//!   for byte as `cargo xtask dist` wrote it, the CA bundle and /tmp, and nothing else.
//! - podman (where it can run a container in this sandbox; it can with runc and the vfs
//!   driver): the image's `reset-controller --version`, and a `preflight` against vcsim from
//!   inside a lab's caller namespace (`--network ns:`), the passwords mounted as files as
//!   deploy/kubernetes mounts them, the agent uploaded from the image into the lab VM. Where
//!   podman cannot run a container, the test says so loudly and the layout checks stand alone.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reset_tests::{bin_dir, guard::Guard, lab::Lab, require_root, sim::TempDir, sim::Vcsim};
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const CONTROLLER: &str = "opt/reset-peer/bin/reset-controller";
const AGENT: &str = "opt/reset-peer/dist/reset-agent";
const SECRETS: &str = "/etc/reset-peer/secrets";

fn target_dir() -> PathBuf {
    bin_dir().parent().expect("target dir").to_path_buf()
}

fn archive() -> PathBuf {
    let a = target_dir().join(format!("image/reset-controller-{VERSION}.oci.tar"));
    assert!(
        a.exists(),
        "{} is missing: run `cargo xtask image` (cargo xtask test does)",
        a.display()
    );
    a
}

fn layout() -> PathBuf {
    archive();
    target_dir().join("image/oci")
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

fn blob(layout: &Path, digest: &Value) -> PathBuf {
    let d = digest.as_str().unwrap();
    layout
        .join("blobs/sha256")
        .join(d.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// (config, layer blobs) of the image tagged with the workspace version.
fn image() -> (Value, Vec<PathBuf>) {
    let l = layout();
    let index = json(&l.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        VERSION
    );
    let manifest = json(&blob(&l, &manifests[0]["digest"]));
    let config = json(&blob(&l, &manifest["config"]["digest"]));
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert_eq!(
                x["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
                "{x}"
            );
            blob(&l, &x["digest"])
        })
        .collect();
    (config, layers)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_image_holds_the_static_controller_and_the_agent_and_nothing_else() {
    let (config, layers) = image();
    let c = &config["config"];
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!([format!("/{CONTROLLER}")])
    );
    assert_eq!(c["User"], "65532:65532", "not root");
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], VERSION);
    for e in c["Env"].as_array().into_iter().flatten() {
        let e = e.as_str().unwrap();
        assert!(!e.contains("PASSWORD"), "no secret in the image: {e}");
    }
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    assert_eq!(layers.len(), 3, "base files, agent, controller");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);

    let root = TempDir::new("image-rootfs").unwrap();
    let mut per_layer: Vec<Vec<String>> = Vec::new();
    for layer in &layers {
        let listing = run(Command::new("tar").arg("-tzf").arg(layer));
        per_layer.push(
            String::from_utf8_lossy(&listing.stdout)
                .lines()
                .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
                .filter(|l| !l.is_empty() && l != ".")
                .collect(),
        );
        run(Command::new("tar")
            .arg("-xzf")
            .arg(layer)
            .arg("-C")
            .arg(root.path()));
    }
    let holds = |i: usize, f: &str| per_layer[i].iter().any(|x| x == f);
    assert!(
        holds(0, "etc/ssl/certs/ca-certificates.crt") && holds(0, "tmp"),
        "{per_layer:?}"
    );
    assert!(holds(1, AGENT) && !holds(1, CONTROLLER), "{per_layer:?}");
    assert!(holds(2, CONTROLLER) && !holds(2, AGENT), "{per_layer:?}");
    let mut files: Vec<String> = per_layer.concat();
    files.sort();
    files.dedup();
    assert_eq!(
        files,
        [
            "etc",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/ca-certificates.crt",
            "opt",
            "opt/reset-peer",
            "opt/reset-peer/bin",
            "opt/reset-peer/bin/reset-controller",
            "opt/reset-peer/dist",
            "opt/reset-peer/dist/reset-agent",
            "tmp",
        ],
        "the layers hold these and nothing else"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &str| {
        std::fs::metadata(root.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (mode(CONTROLLER), mode(AGENT), mode("tmp")),
        (0o755, 0o755, 0o1777)
    );
    let agent = std::fs::read(root.path().join(AGENT)).unwrap();
    let dist = std::fs::read(target_dir().join("dist/reset-agent")).unwrap();
    assert!(agent == dist, "the image carries cargo xtask dist's agent");
    let controller = std::fs::read(root.path().join(CONTROLLER)).unwrap();
    assert!(
        !has_interp(&controller),
        "the controller needs no dynamic loader (there is none in the image)"
    );
    let v = run(Command::new(root.path().join(CONTROLLER)).arg("--version"));
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("reset-controller {VERSION}")
    );
}

/// Whether a 64-bit ELF file asks for a dynamic loader (has a PT_INTERP program header).
fn has_interp(elf: &[u8]) -> bool {
    let at = |o: usize, n: usize| elf.get(o..o + n).expect("an ELF header");
    let phoff = u64::from_le_bytes(at(0x20, 8).try_into().unwrap()) as usize;
    let size = u16::from_le_bytes(at(0x36, 2).try_into().unwrap()) as usize;
    let count = u16::from_le_bytes(at(0x38, 2).try_into().unwrap()) as usize;
    assert_eq!(at(0, 4), b"\x7fELF");
    (0..count).any(|i| u32::from_le_bytes(at(phoff + i * size, 4).try_into().unwrap()) == 3)
}

/// podman with private storage (vfs) and runtime state in a temporary folder, runc, and the
/// process limits it may set here.
struct Podman {
    dir: TempDir,
}

impl Podman {
    fn new() -> Podman {
        Podman {
            dir: TempDir::new("image-podman").unwrap(),
        }
    }

    fn command(&self) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"]);
        c
    }

    /// `podman run --rm` with process limits this sandbox lets a container set (podman's
    /// defaults, and even this process's own hard limits, are refused here), no IPC namespace
    /// mount, then `args`; bounded.
    fn run(&self, args: &[&str], limit: Duration) -> Output {
        let mut c = self.command();
        c.args(["run", "--rm", "--ipc", "none"])
            .args([
                "--ulimit",
                "nofile=4096:4096",
                "--ulimit",
                "nproc=4096:4096",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Guard::spawn(&mut c, "podman");
        let stdout = reset_tests::guard::Pumped::new(child.stdout.take().unwrap());
        let stderr = reset_tests::guard::Pumped::new(child.stderr.take().unwrap());
        let status = child.wait_or_kill(limit);
        Output {
            status,
            stdout: stdout.finish(Duration::from_secs(5)).into_bytes(),
            stderr: stderr.finish(Duration::from_secs(5)).into_bytes(),
        }
    }
}

/// Whether podman failed to set up the container (this sandbox), rather than the image failing.
fn sandbox_refused(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    let image_fault = [
        "executable file not found",
        "exec format error",
        "no such file",
    ]
    .iter()
    .any(|w| s.contains(w));
    let setup_fault = [
        "oci runtime error",
        "oci permission denied",
        "setrlimit",
        "cgroup",
        "operation not permitted",
        "unshare",
        "cannot find runtime",
        "not compatible",
    ]
    .iter()
    .any(|w| s.contains(w));
    setup_fault && !image_fault
}

#[test]
fn podman_runs_the_image_version_and_a_preflight_against_vcsim() {
    if !require_root() {
        return;
    }
    let archive = format!("oci-archive:{}", archive().display());
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!(
            "\n!!! PODMAN IS NOT INSTALLED: the image was NOT run; only its layout was checked \
             (cargo xtask setup installs podman)\n"
        );
        return;
    }
    let podman = Podman::new();
    let out = podman.run(
        &["--network", "none", &archive, "--version"],
        Duration::from_secs(180),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() && sandbox_refused(&stderr) {
        eprintln!(
            "\n!!! PODMAN CANNOT RUN A CONTAINER IN THIS SANDBOX: the image was NOT run; only its \
             layout was checked (the_image_holds_the_static_controller_and_the_agent_and_nothing_else).\n\
             podman said: {stderr}\n"
        );
        return;
    }
    assert!(out.status.success(), "podman run --version: {stderr}");
    eprintln!(
        "podman ran the image: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("reset-controller {VERSION}"),
        "{stderr}"
    );

    // A preflight from the container, in the lab's caller namespace where vcsim listens.
    let (lab, _svc) = Lab::with_service();
    let sim = Vcsim::builder().vm("vm", &lab).inside(&lab.caller).start();
    let creds = sim.credentials().clone();
    let secrets = TempDir::new("image-secrets").unwrap();
    for (file, pw) in [
        ("govc-password", &creds.vc_password),
        ("vm-password", &creds.guest_password),
    ] {
        std::fs::write(secrets.path().join(file), format!("{pw}\n")).unwrap();
    }
    let netns = format!("ns:/run/netns/{}", lab.caller.name());
    let mount = format!("{}:{SECRETS}:ro", secrets.path().display());
    let env = [
        format!("GOVC_URL={}", sim.url),
        format!("GOVC_USERNAME={}", creds.vc_user),
        format!("GOVC_PASSWORD_FILE={SECRETS}/govc-password"),
        format!("VM_PASSWORD_FILE={SECRETS}/vm-password"),
        format!("VM_USER_NAME={}", creds.guest_user),
        "VM_NAME=vm".to_string(),
        "GOVC_INSECURE=true".to_string(),
        "OUTPUT=json".to_string(),
    ];
    let mut args = vec!["--network", netns.as_str(), "-v", mount.as_str()];
    for e in &env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend([archive.as_str(), "preflight"]);
    let out = podman.run(&args, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "preflight in the container:\n{stdout}\n{stderr}"
    );
    let results: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let r = &results[0];
    eprintln!("preflight in the container: {}", r["output"]);
    assert_eq!(
        (&r["report"]["vm"], &r["report"]["status"]),
        (&"vm".into(), &"ok".into()),
        "{r}"
    );
    assert_eq!(
        r["exit_code"], 0,
        "the agent's own preflight passed in the VM: {r}"
    );
    assert!(
        r["output"].as_str().unwrap_or("").contains("steering"),
        "the agent from the image ran its preflight: {r}"
    );
    assert!(!creds.leaked_in(&stdout) && !creds.leaked_in(&stderr));
    assert_eq!(
        sim.guest_files(),
        Vec::<PathBuf>::new(),
        "the guest files are gone"
    );
    lab.assert_clean();
}
