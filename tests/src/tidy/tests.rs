//! The reader on small inputs: paths past comments, strings and tests; circles and sites.

use super::*;

#[test]
fn reads_paths_past_comments_strings_and_tests() {
    let src = "use crate::{a::B, c::{d::E, F}};\n// use crate::x::Y;\nlet s = \"crate::z\";\n\
               let c = '\"'; let q = '\\''; fn f<'a>() { super::super::g(); my_crate::h(); }\n\
               #[cfg(test)]\nmod tests { use crate::q::R; }\nuse crate::m as n;\n";
    let code = without_tests(&code_only(src));
    let found: Vec<(usize, String)> = paths(&code)
        .into_iter()
        .map(|(l, p)| (l, p.join("::")))
        .collect();
    assert_eq!(
        found,
        [
            (1, "crate::a::B".to_string()),
            (1, "crate::c::d::E".to_string()),
            (1, "crate::c::F".to_string()),
            (4, "super::super::g".to_string()),
            (7, "crate::m".to_string()),
        ]
    );
    assert_eq!(
        declared_modules("pub mod a;\nmod b;\nmod c { }"),
        ["a", "b"]
    );
}

#[test]
fn finds_a_circle_and_its_sites() {
    let mut g = ModuleGraph::default();
    for m in ["crate", "a", "b", "c", "d"] {
        g.modules.insert(m.into(), PathBuf::new());
    }
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.edges.insert(
            (from.into(), to.into()),
            Import {
                site: format!("src/{from}.rs:1"),
                path: format!("crate::{to}::X"),
            },
        );
    }
    let cycles = g.cycles();
    assert_eq!(cycles, [vec!["a", "b", "c"]]);
    let text = g.explain(&cycles[0]);
    assert!(text.starts_with("a -> b -> c -> a"), "{text}");
    assert!(text.contains("src/c.rs:1: crate::a::X"), "{text}");
    g.edges.remove(&("c".into(), "a".into()));
    assert!(g.cycles().is_empty());
    // `super::` from c is the root, so `super::a::Y` is in a.
    assert_eq!(
        g.resolve("c", &["super".into(), "a".into(), "Y".into()]),
        Some("a".into())
    );
    assert_eq!(g.resolve("c", &["super".into(), "super".into()]), None);
}
