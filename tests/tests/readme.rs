//! README check (issue 4): every tunable and every agent report field is documented.
//! Tunables come from the seed list (also read from ../shared/DESIGN.md when it is beside the
//! repository); report fields are read from the agent's report struct, so a new field that is
//! not documented fails this test.
use std::path::Path;

const TUNABLES: &[&str] = &[
    "TARGET_SERVICE_PORT",
    "PROXY_PORT",
    "NETWORK_INTERFACE",
    "TOXICITY",
    "RESET_TIMEOUT",
    "TOTAL_CHAOS_DURATION",
    "CHAOS_INTERVAL",
    "SEQUENCE",
    "RAMP_TIME",
    "GOVC_URL",
    "GOVC_USERNAME",
    "GOVC_PASSWORD",
    "GOVC_INSECURE",
    "VM_NAME",
    "VM_USER_NAME",
    "VM_PASSWORD",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// `pub name:` fields of the named structs in a Rust source file.
fn struct_fields(src: &str, structs: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in structs {
        let start = src
            .find(&format!("pub struct {name} {{"))
            .unwrap_or_else(|| panic!("struct {name} not found"));
        let body = &src[start..];
        let body = &body[..body.find("\n}").expect("struct end")];
        for line in body.lines().skip(1) {
            if let Some(rest) = line.trim().strip_prefix("pub ")
                && let Some((field, _)) = rest.split_once(':')
            {
                out.push(field.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn every_tunable_is_documented_with_its_default() {
    let readme = readme();
    let mut tunables: Vec<String> = TUNABLES.iter().map(|s| s.to_string()).collect();
    // Also the seed's own list, when shared/ is beside the repository (as in CI).
    if let Ok(design) = std::fs::read_to_string(root().join("../shared/DESIGN.md")) {
        for word in design.split(|c: char| !(c.is_ascii_uppercase() || c == '_')) {
            if TUNABLES.contains(&word) && !tunables.iter().any(|t| t == word) {
                tunables.push(word.to_owned());
            }
        }
    }
    let missing: Vec<_> = tunables
        .iter()
        .filter(|t| !readme.contains(&format!("`{t}`")) && !readme.contains(&format!("/ {t} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md lacks a reference entry for {missing:?}"
    );
}

#[test]
fn every_report_field_is_documented() {
    let readme = readme();
    let src = std::fs::read_to_string(root().join("reset-agent/src/report.rs")).expect("report.rs");
    let fields = struct_fields(&src, &["Report", "Percentiles", "CleanupReport"]);
    assert!(fields.len() > 25, "parsed too few fields: {fields:?}");
    let missing: Vec<_> = fields
        .iter()
        .filter(|f| !readme.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not document report fields {missing:?}"
    );
}
