//! Tidy checks (`cargo test`, so `cargo xtask test`): the tree keeps its shape.
//!
//! - No import circle between the modules of reset-controller or reset-agent: settings flow
//!   one way, a module never imports one that imports it back (read from `use crate::`,
//!   `crate::` and `super::` paths; test code left out).
//! - No source file under a crate's src/ is over 450 lines (an inline test module counts; a
//!   long one moves to a sibling tests.rs), but for the files listed in `LONG_FILES`.
//! - Every path ARCHITECTURE.md's code map names exists.
use std::path::{Path, PathBuf};

use reset_tests::tidy::ModuleGraph;

/// The most lines a source file under a crate's src/ may have.
const MAX_LINES: usize = 450;

/// Files still over `MAX_LINES`, each being split by its owner. Remove an entry once its file
/// is short enough: the test then fails until the entry goes, so the list only shrinks.
const LONG_FILES: &[&str] = &[];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[test]
fn no_import_circle_in_the_controller_or_the_agent() {
    let mut circles = Vec::new();
    for krate in ["reset-controller", "reset-agent"] {
        let g = ModuleGraph::read(&root().join(krate).join("src"));
        assert!(
            g.modules.len() > 8 && g.edges.len() > 8,
            "{krate}: read too little: {:?}",
            g.modules.keys()
        );
        for cycle in g.cycles() {
            circles.push(format!("{krate}: {}", g.explain(&cycle)));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles (a module must not import one that imports it back; move the shared \
         piece to the module both may import, or report through a trait):\n{}",
        circles.join("\n")
    );
}

/// The src/ directories of the workspace's crates (and of any crate below it).
fn crate_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                walk(&p, out);
            } else if name == "Cargo.toml" && dir.join("src").is_dir() {
                out.push(dir.join("src"));
            }
        }
    }
    let mut out = Vec::new();
    walk(root(), &mut out);
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_source_file_is_over_450_lines() {
    let sources = crate_sources();
    assert!(sources.len() >= 6, "found too few crates: {sources:?}");
    let mut long = Vec::new();
    let mut allowed_but_short = Vec::new();
    for src in sources {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let lines = std::fs::read_to_string(&f)
                .unwrap_or_default()
                .lines()
                .count();
            let rel = f.strip_prefix(root()).unwrap_or(&f).display().to_string();
            let allowed = LONG_FILES.contains(&rel.as_str());
            if lines > MAX_LINES && !allowed {
                long.push(format!("{rel}: {lines} lines"));
            } else if lines <= MAX_LINES && allowed {
                allowed_but_short.push(rel);
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines: split by job (a long inline test module moves to a sibling \
         tests.rs):\n{}",
        long.join("\n")
    );
    assert!(
        allowed_but_short.is_empty(),
        "now {MAX_LINES} lines or fewer: remove from LONG_FILES in tests/tests/tidy.rs: \
         {allowed_but_short:?}"
    );
    for f in LONG_FILES {
        assert!(
            root().join(f).is_file(),
            "LONG_FILES names {f}, which is gone"
        );
    }
}

/// The paths ARCHITECTURE.md's code map names, each joined to the directory entries above it
/// (by indentation): `reset-agent/` then `  src/nft/` then `    mod.rs`.
fn code_map_paths(text: &str) -> Vec<PathBuf> {
    let map = text
        .split("## Code map")
        .nth(1)
        .and_then(|t| t.split("```").nth(1))
        .expect("ARCHITECTURE.md has a code map in a ``` block");
    let mut parents: Vec<(usize, PathBuf)> = Vec::new();
    let mut out = Vec::new();
    for line in map.lines().filter(|l| !l.trim().is_empty()) {
        let indent = line.len() - line.trim_start().len();
        // The entry is the first word (or words joined by ", ", as in `py/, go/`).
        let mut words = Vec::new();
        for w in line.split_whitespace() {
            words.push(w.trim_end_matches(','));
            if !w.ends_with(',') {
                break;
            }
        }
        let is_path = |w: &str| w.contains('/') || w.ends_with(".rs") || w.ends_with(".toml");
        if !words.iter().all(|w| is_path(w)) {
            continue; // a description's second line
        }
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let base = parents
            .last()
            .map_or(root().to_path_buf(), |(_, p)| p.clone());
        for w in words {
            let p = base.join(w);
            if w.ends_with('/') {
                parents.push((indent, p.clone()));
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn every_path_in_the_code_map_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let paths = code_map_paths(&text);
    assert!(paths.len() > 20, "read too few paths: {paths:?}");
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's code map names paths that do not exist: {missing:?}"
    );
}
