//! deploy/kubernetes: the manifests validate against the Kubernetes 1.21 and the latest schemas
//! (kubernetes-validate, strict: unknown fields are errors), and keep to the rules that no
//! schema checks:
//!
//! - tunables come from the ConfigMap (envFrom) or env, and each is a tunable of
//!   `reset-controller run` (read from its --help); the Litmus ChaosExperiment carries the same
//!   tunables with the same values and the same image as the Job, and its ChaosEngine only
//!   overrides tunables that exist;
//! - passwords come only from the Secret, mounted as files that GOVC_PASSWORD_FILE and
//!   VM_PASSWORD_FILE name: never a password in env (value or secretKeyRef), in envFrom, or in
//!   the ConfigMap; the Secret is a template (placeholders only);
//! - the ServiceAccount is bound to nothing and mounts no API token.
//!
//! Shown by mutation: a Job that loses its Secret mount, or carries a password in plain env, is
//! still schema-valid, and fails these rules with a message naming the fix; so do a ConfigMap
//! with a password, a ChaosExperiment without its secret, and an engine with a password.
//!
//! kubernetes-validate has no schema for Litmus' CRDs (it warns and skips them): the rules
//! above are their check.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use reset_tests::{help, sim::TempDir};
use serde_json::{Value, json};

/// The image `cargo xtask image` builds, as the manifests must name it.
const IMAGE: &str = concat!("reset-peer/reset-controller:", env!("CARGO_PKG_VERSION"));
/// The last kubernetes-validate release that ships the 1.21 schemas, installed by `cargo xtask
/// setup` beside the newest one (which has the latest schemas).
const VALIDATE_121: &str = "kubernetes-validate-1.28.3";
/// What the Secret template holds instead of a password.
const PLACEHOLDER: &str = "REPLACE-ME";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every document of a YAML file, as JSON (PyYAML, which kubernetes-validate uses too).
fn load(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3 (cargo xtask setup installs PyYAML with kubernetes-validate)");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The manifests, one document each.
#[derive(Clone)]
struct Manifests {
    account: Value,
    secret: Value,
    config: Value,
    job: Value,
    experiment: Value,
    engine: Value,
}

fn manifests() -> Manifests {
    let mut by_kind: BTreeMap<String, Value> = BTreeMap::new();
    for e in std::fs::read_dir(dir()).unwrap().flatten() {
        for doc in load(&e.path()) {
            let kind = doc["kind"].as_str().unwrap().to_string();
            assert!(
                !kind.contains("Role"),
                "{}: the controller needs no Kubernetes API, so no {kind}",
                e.path().display()
            );
            assert!(by_kind.insert(kind.clone(), doc).is_none(), "two {kind}s");
        }
    }
    let mut take = |k: &str| {
        by_kind
            .remove(k)
            .unwrap_or_else(|| panic!("no {k} in deploy/kubernetes"))
    };
    let m = Manifests {
        account: take("ServiceAccount"),
        secret: take("Secret"),
        config: take("ConfigMap"),
        job: take("Job"),
        experiment: take("ChaosExperiment"),
        engine: take("ChaosEngine"),
    };
    assert!(by_kind.is_empty(), "unexpected: {:?}", by_kind.keys());
    m
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

/// An environment name that holds a secret: the two passwords, or anything named like one
/// that is not the name of a file holding it.
fn secret_name(env: &str) -> bool {
    let upper = env.to_ascii_uppercase();
    !upper.ends_with("_FILE")
        && (reset_controller::config::SECRET_VARS.contains(&env)
            || ["PASSWORD", "SECRET", "TOKEN"]
                .iter()
                .any(|w| upper.contains(w)))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// The keys the Secret template defines.
fn secret_keys(m: &Manifests) -> Vec<String> {
    let mut keys = Vec::new();
    for field in ["stringData", "data"] {
        if let Some(o) = m.secret[field].as_object() {
            keys.extend(o.keys().cloned());
        }
    }
    keys
}

/// `FILE` is `MOUNT/KEY` for one of `mounts` (mount path of the Secret) and a key the Secret has.
fn in_secret(file: Option<&str>, mounts: &[String], keys: &[String]) -> bool {
    file.and_then(|f| f.rsplit_once('/'))
        .is_some_and(|(dir, key)| {
            mounts.iter().any(|m| m.trim_end_matches('/') == dir) && keys.iter().any(|k| k == key)
        })
}

/// Everything in `m` that breaks the rules, one line each.
fn problems(m: &Manifests) -> Vec<String> {
    let mut p = Vec::new();
    let secret = name(&m.secret);
    let keys = secret_keys(m);
    if m.account["automountServiceAccountToken"] != false {
        p.push("ServiceAccount: set automountServiceAccountToken: false".into());
    }
    for (k, v) in m.secret["stringData"].as_object().into_iter().flatten() {
        if v != PLACEHOLDER {
            p.push(format!(
                "Secret {secret}: {k} is not {PLACEHOLDER}: commit no password"
            ));
        }
    }
    let config = m.config["data"].as_object().cloned().unwrap_or_default();
    for k in config.keys().filter(|k| secret_name(k)) {
        p.push(format!(
            "ConfigMap: {k} is a secret in a ConfigMap: put it in the Secret and name its file in {k}_FILE"
        ));
    }

    let pod = &m.job["spec"]["template"]["spec"];
    if pod["serviceAccountName"] != name(&m.account) {
        p.push("Job: run as the reset-peer ServiceAccount".into());
    }
    if pod["automountServiceAccountToken"] != false {
        p.push("Job: set automountServiceAccountToken: false".into());
    }
    let secret_volumes: Vec<&str> = list(&pod["volumes"])
        .iter()
        .filter(|v| v["secret"]["secretName"] == secret)
        .filter_map(|v| v["name"].as_str())
        .collect();
    for c in list(&pod["containers"]) {
        let who = format!("Job container {}", c["name"].as_str().unwrap_or("?"));
        let mut env: BTreeMap<String, Option<String>> = BTreeMap::new();
        for from in list(&c["envFrom"]) {
            if from.get("secretRef").is_some() {
                p.push(format!(
                    "{who}: envFrom secretRef puts every key of a Secret in the environment: mount it as files"
                ));
            }
            if from["configMapRef"]["name"] == name(&m.config) {
                for (k, v) in &config {
                    env.insert(k.clone(), v.as_str().map(String::from));
                }
            }
        }
        for e in list(&c["env"]) {
            let n = e["name"].as_str().unwrap_or("");
            if secret_name(n) {
                p.push(format!(
                    "{who}: env {n} is a password in the environment: mount the Secret and set {n}_FILE"
                ));
            }
            env.insert(n.to_string(), e["value"].as_str().map(String::from));
        }
        let mounts: Vec<String> = list(&c["volumeMounts"])
            .iter()
            .filter(|vm| secret_volumes.iter().any(|v| vm["name"] == *v))
            .filter_map(|vm| vm["mountPath"].as_str().map(String::from))
            .collect();
        for var in ["GOVC_PASSWORD_FILE", "VM_PASSWORD_FILE"] {
            let file = env.get(var).cloned().flatten();
            if !in_secret(file.as_deref(), &mounts, &keys) {
                p.push(format!(
                    "{who}: {var} ({file:?}) is not a file of the mounted Secret {secret} (mounted at {mounts:?}): mount the Secret as a volume and point {var} into it"
                ));
            }
        }
    }

    let def = &m.experiment["spec"]["definition"];
    let mounts: Vec<String> = list(&def["secrets"])
        .iter()
        .filter(|s| s["name"] == secret)
        .filter_map(|s| s["mountPath"].as_str().map(String::from))
        .collect();
    let exp_env: BTreeMap<&str, Option<&str>> = list(&def["env"])
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or(""), e["value"].as_str()))
        .collect();
    for n in exp_env.keys().filter(|n| secret_name(n)) {
        p.push(format!(
            "ChaosExperiment: env {n} is a password in the environment: list the Secret under secrets and set {n}_FILE"
        ));
    }
    for var in ["GOVC_PASSWORD_FILE", "VM_PASSWORD_FILE"] {
        if !in_secret(exp_env.get(var).copied().flatten(), &mounts, &keys) {
            p.push(format!(
                "ChaosExperiment: {var} is not a file of the Secret {secret} under spec.definition.secrets (mounted at {mounts:?})"
            ));
        }
    }
    if m.engine["spec"]["chaosServiceAccount"] != name(&m.account) {
        p.push("ChaosEngine: chaosServiceAccount must be the reset-peer ServiceAccount".into());
    }
    for x in list(&m.engine["spec"]["experiments"]) {
        for e in list(&x["spec"]["components"]["env"]) {
            let n = e["name"].as_str().unwrap_or("");
            if secret_name(n) {
                p.push(format!(
                    "ChaosEngine: env {n} is a password in the environment: the experiment mounts the Secret"
                ));
            }
        }
    }
    p
}

/// Runs kubernetes-validate (strict) on `files` for `version` ("latest": the newest bundled);
/// its output, which must pass.
fn validate(version: &str, files: &[PathBuf]) -> String {
    let mut c = if version == "latest" {
        Command::new("kubernetes-validate")
    } else {
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
        let lib = PathBuf::from(home)
            .join(".cache/reset-peer")
            .join(VALIDATE_121);
        assert!(
            lib.is_dir(),
            "{} is missing: run `cargo xtask setup` (it installs kubernetes-validate 1.28.3 there for the 1.21 schemas)",
            lib.display()
        );
        let mut c = Command::new("python3");
        c.env("PYTHONPATH", lib)
            .args(["-m", "kubernetes_validate", "-k", version]);
        c
    };
    let out = c
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate (cargo xtask setup installs it from PyPI)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate {version}:\n{text}"
    );
    text
}

fn files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn the_manifests_validate_against_kubernetes_1_21_and_the_latest() {
    let files = files();
    for version in ["1.21.0", "latest"] {
        let out = validate(version, &files);
        for resource in [
            "serviceaccount/reset-peer",
            "secret/reset-peer-credentials",
            "configmap/reset-peer-config",
            "job/reset-peer-run",
        ] {
            assert!(
                out.contains(&format!("passed for resource {resource} against version")),
                "{version}: {resource} not validated:\n{out}"
            );
        }
        for kind in ["ChaosExperiment", "ChaosEngine"] {
            assert!(
                out.contains(&format!("Couldn't find schema for kind {kind}")),
                "{out}"
            );
        }
        eprintln!(
            "NOTE: kubernetes-validate {version} has no schema for Litmus' ChaosExperiment and \
             ChaosEngine; the rules of this file check them"
        );
    }
}

#[test]
fn credentials_come_only_from_the_secret_mounted_as_files() {
    assert_eq!(problems(&manifests()), Vec::<String>::new());
}

#[test]
fn the_litmus_pair_uses_the_image_and_the_tunables_of_the_job() {
    let m = manifests();
    let tunables: Vec<String> = help::options("reset-controller", &["run"])
        .into_iter()
        .filter_map(|o| o.env)
        .collect();
    let config = m.config["data"].as_object().unwrap();
    for k in config.keys() {
        assert!(
            tunables.contains(k),
            "ConfigMap key {k} is not a tunable of reset-controller run"
        );
    }
    for required in ["GOVC_URL", "GOVC_USERNAME", "VM_NAME", "VM_USER_NAME"] {
        assert!(config.contains_key(required), "ConfigMap lacks {required}");
    }
    let job = &m.job["spec"]["template"]["spec"]["containers"][0];
    let def = &m.experiment["spec"]["definition"];
    assert_eq!(
        (job["image"].as_str(), def["image"].as_str()),
        (Some(IMAGE), Some(IMAGE))
    );
    assert_eq!(job["args"], json!(["run"]));
    assert_eq!(def["args"], json!(["run"]));
    let exp: serde_json::Map<String, Value> = list(&def["env"])
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].clone()))
        .collect();
    assert_eq!(
        &exp, config,
        "the experiment's tunables are the ConfigMap's"
    );
    for x in list(&m.engine["spec"]["experiments"]) {
        assert_eq!(x["name"], name(&m.experiment));
        for e in list(&x["spec"]["components"]["env"]) {
            let n = e["name"].as_str().unwrap();
            assert!(
                exp.contains_key(n),
                "the engine overrides {n}, which the experiment lacks"
            );
        }
    }
}

#[test]
fn a_manifest_without_its_secret_mount_or_with_a_password_in_env_fails() {
    let shipped = manifests();
    let scratch = TempDir::new("k8s-mutations").unwrap();
    type Mutation = (&'static str, fn(&mut Manifests), &'static str);
    let mutations: [Mutation; 6] = [
        (
            "the Job loses its Secret mount",
            |m| {
                let c = &mut m.job["spec"]["template"]["spec"]["containers"][0];
                let mounts = c["volumeMounts"].as_array_mut().unwrap();
                mounts.retain(|vm| vm["name"] != "credentials");
            },
            "is not a file of the mounted Secret",
        ),
        (
            "the Job carries a password in plain env",
            |m| {
                let c = &mut m.job["spec"]["template"]["spec"]["containers"][0];
                c["env"] = json!([{"name": "VM_PASSWORD", "value": "hunter2"}]);
            },
            "env VM_PASSWORD is a password in the environment",
        ),
        (
            "the Job reads the Secret as env",
            |m| {
                let c = &mut m.job["spec"]["template"]["spec"]["containers"][0];
                c["envFrom"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"secretRef": {"name": "reset-peer-credentials"}}));
            },
            "envFrom secretRef",
        ),
        (
            "the ConfigMap carries a password",
            |m| m.config["data"]["GOVC_PASSWORD"] = json!("hunter2"),
            "ConfigMap: GOVC_PASSWORD is a secret",
        ),
        (
            "the ChaosExperiment loses its secret",
            |m| m.experiment["spec"]["definition"]["secrets"] = json!([]),
            "ChaosExperiment: GOVC_PASSWORD_FILE is not a file of the Secret",
        ),
        (
            "the ChaosEngine carries a password",
            |m| {
                m.engine["spec"]["experiments"][0]["spec"]["components"]["env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "GOVC_PASSWORD", "value": "hunter2"}));
            },
            "ChaosEngine: env GOVC_PASSWORD",
        ),
    ];
    for (what, mutate, says) in mutations {
        let mut m = shipped.clone();
        mutate(&mut m);
        let found = problems(&m);
        eprintln!("mutation: {what}: {found:?}");
        assert!(
            found.iter().any(|p| p.contains(says)),
            "{what}: not caught (want {says:?}): {found:?}"
        );
        // The schemas alone would not have caught the Job's mutations.
        if what.starts_with("the Job") {
            let file = scratch.path().join("job.yaml");
            std::fs::write(&file, serde_json::to_string_pretty(&m.job).unwrap()).unwrap();
            let out = validate("latest", &[file]);
            assert!(
                out.contains("passed for resource job/reset-peer-run"),
                "{out}"
            );
        }
    }
}
