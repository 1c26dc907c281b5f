//! pyvmomi (VMware's Python SDK, from PyPI) drives the `vcsim` binary through every
//! call the controller uses: tests/py/test_pyvmomi.py. Fails (never skips) when
//! python3 or pyvmomi is missing: `cargo xtask setup` installs them.
use std::path::Path;
use std::process::Command;

#[test]
fn pyvmomi_drives_the_simulator() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/test_pyvmomi.py");
    let out = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .arg(&script)
        .env("VCSIM_BIN", reset_tests::bin("vcsim"))
        .output()
        .expect("python3 is required (cargo xtask setup installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'pyVmomi'"),
        "pyvmomi is not installed: pip install pyvmomi (cargo xtask setup does)"
    );
    assert!(out.status.success(), "pyvmomi test failed:\n{err}");
    assert!(err.contains("Ran 9 tests") && err.contains("\nOK"), "{err}");
}
