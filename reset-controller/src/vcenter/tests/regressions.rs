//! Fuzz regressions: every input in fuzz_regressions/ once crashed, hung or blew up a
//! decoder. Each must now come back as an error, without a panic.

use std::path::Path;

use crate::vcenter::fuzz::decode_all;

#[test]
fn fuzz_regressions_decode_to_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/vcenter/tests/fuzz_regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        assert!(!decode_all(&body), "{} decoded as a reply", path.display());
        seen += 1;
    }
    assert!(seen > 0, "no inputs in {}", dir.display());
}

#[test]
fn many_attributes_are_refused_not_scanned() {
    let body = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/vcenter/tests/fuzz_regressions/quadratic_attributes.xml"),
    )
    .unwrap();
    let e = super::decode_reply(&body, "RetrievePropertiesEx").unwrap_err();
    assert!(
        matches!(
            e,
            super::DecodeError::Xml(super::super::xml::XmlError::TooLarge)
        ),
        "{e:?}"
    );
}
