//! Readers for the tidy tests (tests/tests/tidy.rs), which hold the tree to its shape: a
//! crate's module graph as its `use crate::` / `crate::` / `super::` paths draw it (test code
//! left out), and the import circles in it.
//!
//! Must not: compile or run anything; it reads source text. It understands just enough Rust
//! (comments, string and char literals, `#[cfg(test)]` items, `mod` declarations, path trees
//! like `crate::{a::B, c::{D, E}}`) to follow imports; a path it cannot place is ignored.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod lex;

pub use lex::{code_only, paths, without_tests};

/// One import of one module by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Where: `src/config/mod.rs:6`.
    pub site: String,
    /// The path as written, e.g. `crate::probe::ProbeSettings`.
    pub path: String,
}

/// A crate's modules (`config`, `probe::verdict`; the root is `crate`) and which imports
/// which, with the first import site of each edge.
#[derive(Debug, Default)]
pub struct ModuleGraph {
    pub modules: BTreeMap<String, PathBuf>,
    pub edges: BTreeMap<(String, String), Import>,
}

impl ModuleGraph {
    /// Reads the crate whose sources are `src` (roots: lib.rs and main.rs), following `mod`
    /// declarations that are not `#[cfg(test)]`.
    pub fn read(src: &Path) -> ModuleGraph {
        let mut g = ModuleGraph::default();
        let mut files = Vec::new();
        for root in ["lib.rs", "main.rs"] {
            if src.join(root).is_file() {
                collect(src, &src.join(root), "crate", &mut g.modules, &mut files);
            }
        }
        for (module, file, code) in files {
            let shown = file
                .strip_prefix(src.parent().unwrap_or(src))
                .unwrap_or(&file);
            for (line, path) in paths(&code) {
                let Some(target) = g.resolve(&module, &path) else {
                    continue;
                };
                if target != module {
                    g.edges
                        .entry((module.clone(), target))
                        .or_insert_with(|| Import {
                            site: format!("{}:{line}", shown.display()),
                            path: path.join("::"),
                        });
                }
            }
        }
        g
    }

    /// The module `path` (as written in `module`) names: its longest prefix that is a module.
    fn resolve(&self, module: &str, path: &[String]) -> Option<String> {
        let mut segs: Vec<&str> = if module == "crate" {
            vec![]
        } else {
            module.split("::").collect()
        };
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") => {
                segs.clear();
                rest = &path[1..];
            }
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    segs.pop()?;
                    rest = &rest[1..];
                }
            }
            _ => return None,
        }
        let mut best = if segs.is_empty() {
            "crate".to_string()
        } else {
            segs.join("::")
        };
        let mut cur: Vec<&str> = segs;
        for s in rest {
            cur.push(s);
            let name = cur.join("::");
            if self.modules.contains_key(&name) {
                best = name;
            } else {
                break;
            }
        }
        Some(best)
    }

    /// The import circles: each set of modules that import one another (a strongly connected
    /// component of more than one module), as one cycle through it.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in self.edges.keys() {
            next.entry(from).or_default().push(to);
        }
        let mut seen_in_cycle: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        for start in self.modules.keys() {
            if seen_in_cycle.contains(start) {
                continue;
            }
            if let Some(cycle) = shortest_cycle(&next, start) {
                seen_in_cycle.extend(cycle.iter().cloned());
                out.push(cycle);
            }
        }
        out
    }

    /// `a -> b -> a`, each step with its first import site.
    pub fn explain(&self, cycle: &[String]) -> String {
        let mut s = cycle.join(" -> ");
        s.push_str(" -> ");
        s.push_str(&cycle[0]);
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            if let Some(imp) = self.edges.get(&(from.clone(), to.clone())) {
                s.push_str(&format!("\n    {}: {}", imp.site, imp.path));
            }
        }
        s
    }
}

/// The shortest way from `start` back to itself, if there is one.
fn shortest_cycle(next: &BTreeMap<&str, Vec<&str>>, start: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in next.get(n).into_iter().flatten() {
            if m == start {
                let mut cycle = vec![n.to_string()];
                let mut at = n;
                while at != start {
                    at = prev[at];
                    cycle.push(at.to_string());
                }
                cycle.reverse();
                return Some(cycle);
            }
            if m != start && !prev.contains_key(m) {
                prev.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    None
}

/// Adds the module `name` in `file` and, recursively, the modules it declares.
fn collect(
    src: &Path,
    file: &Path,
    name: &str,
    modules: &mut BTreeMap<String, PathBuf>,
    files: &mut Vec<(String, PathBuf, String)>,
) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let code = without_tests(&code_only(&text));
    modules.insert(name.to_string(), file.to_path_buf());
    // A file's children live in the directory named after it (or its own, for mod.rs and
    // the roots).
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = if file.parent() == Some(src) && matches!(stem, "lib" | "main") || stem == "mod" {
        file.parent().unwrap_or(src).to_path_buf()
    } else {
        file.with_extension("")
    };
    for child in declared_modules(&code) {
        let path = [
            dir.join(format!("{child}.rs")),
            dir.join(&child).join("mod.rs"),
        ]
        .into_iter()
        .find(|p| p.is_file());
        if let Some(path) = path {
            let full = if name == "crate" {
                child.clone()
            } else {
                format!("{name}::{child}")
            };
            collect(src, &path, &full, modules, files);
        }
    }
    files.push((name.to_string(), file.to_path_buf(), code));
}

/// `name` of every `mod name;` (any visibility) in code.
fn declared_modules(code: &str) -> Vec<String> {
    let words: Vec<&str> = code.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "mod" && w[1].ends_with(';'))
        .map(|w| w[1].trim_end_matches(';').to_string())
        .collect()
}

#[cfg(test)]
mod tests;
