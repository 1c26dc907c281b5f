//! README check: every tunable and every agent report field is documented, with the default
//! the binaries really use, and the README names no tunable that does not exist.
//!
//! Tunables are read from clap (`--help` of every subcommand of both binaries, see
//! `reset_tests::help`) plus the controller's secrets, which have no flag
//! (`reset_controller::config::SECRET_VARS`); report fields from the agent's report struct.
//! A new flag or field that is not documented fails this test.
use std::collections::BTreeMap;
use std::path::Path;

use reset_tests::help::{self, Opt};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// A tunable as the binaries take it.
#[derive(Debug, Default)]
struct Tunable {
    default: Option<String>,
    required: bool,
    /// Where it was seen (`reset-agent run`, ...).
    seen_in: Vec<String>,
}

/// Every environment-backed option of both binaries' subcommands, by environment name, plus
/// the secrets; fails when two subcommands disagree on a default.
fn tunables() -> BTreeMap<String, Tunable> {
    let mut out: BTreeMap<String, Tunable> = BTreeMap::new();
    for (bin, subs) in [
        ("reset-agent", ["run", "preflight", "cleanup"]),
        ("reset-controller", ["run", "preflight", "cleanup"]),
    ] {
        for sub in subs {
            for Opt {
                env,
                default,
                required,
                ..
            } in help::options(bin, &[sub])
            {
                let Some(env) = env else { continue };
                let t = out.entry(env.clone()).or_default();
                let here = format!("{bin} {sub}");
                assert!(
                    t.seen_in.is_empty() || t.default == default,
                    "{env}: default {default:?} in {here}, {:?} in {:?}",
                    t.default,
                    t.seen_in
                );
                t.default = default;
                t.required |= required;
                t.seen_in.push(here);
            }
        }
    }
    for secret in reset_controller::config::SECRET_VARS {
        out.entry(secret.to_string()).or_default().required = true;
    }
    out
}

/// The README's reference rows (`| first cell | default | meaning |`, backticks dropped): those
/// whose first cell starts with a flag or with the name of a flagless tunable (a secret).
fn reference_rows(readme: &str, tunables: &BTreeMap<String, Tunable>) -> Vec<Vec<String>> {
    readme
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().replace('`', ""))
                .collect::<Vec<_>>()
        })
        .filter(|r| {
            r.len() > 2
                && (r[0].starts_with("--") || tunables.keys().any(|k| r[0].starts_with(k.as_str())))
        })
        .collect()
}

/// The environment names a row's first cell names: its words in capitals
/// (`--stream`, `--selection` / `STREAM`, `SELECTION`; `GOVC_PASSWORD` (or `--govc-password-file`)).
fn names_in(cell: &str) -> Vec<&str> {
    cell.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.len() > 2 && w.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect()
}

#[test]
fn every_tunable_is_documented_with_its_default() {
    let tunables = tunables();
    assert!(
        tunables.len() > 30,
        "read too few tunables from --help: {:?}",
        tunables.keys()
    );
    let rows = reference_rows(&readme(), &tunables);
    let mut problems = Vec::new();
    for (name, t) in &tunables {
        let documented: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| names_in(&r[0]).contains(&name.as_str()))
            .collect();
        if documented.is_empty() {
            problems.push(format!(
                "{name}: no reference row (seen in {:?})",
                t.seen_in
            ));
        }
        for row in documented {
            let cell = &row[1];
            let ok = match (&t.default, t.required) {
                // Cells are read with their backticks dropped; so is the default.
                (Some(d), _) => {
                    let d = d.replace('`', "");
                    *cell == d || cell.split(", ").any(|c| c == d)
                }
                (None, true) => cell == "required",
                (None, false) => cell != "required",
            };
            if !ok {
                let truth = match (&t.default, t.required) {
                    (Some(d), _) => format!("default to {d:?}"),
                    (None, true) => "require it".into(),
                    (None, false) => "have no default".into(),
                };
                problems.push(format!(
                    "{name}: README says {cell:?}, the binaries {truth} ({:?})",
                    t.seen_in
                ));
            }
        }
    }
    assert!(problems.is_empty(), "README.md:\n{}", problems.join("\n"));
}

#[test]
fn the_readme_names_no_tunable_that_does_not_exist() {
    let tunables = tunables();
    let unknown: Vec<String> = reference_rows(&readme(), &tunables)
        .iter()
        .flat_map(|row| {
            names_in(&row[0])
                .into_iter()
                .filter(|n| !tunables.contains_key(*n))
                .map(|n| format!("{n} (row {:?})", row[0]))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "README.md documents tunables the binaries do not take: {unknown:?}"
    );
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
