//! `cargo xtask test`: the whole gate, in the order that fails fastest.
use crate::sh;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    let root = sh::root();
    sh::run(
        sh::cargo()
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]),
    )?;
    sh::run(sh::cargo().current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Licenses, bans, sources; advisories when the RustSec database can be had.
    crate::deny::run()?;
    // The e2e tests run the workspace's binaries (agent, controller, simulator, service).
    sh::run(
        sh::cargo()
            .current_dir(&root)
            .args(["build", "--workspace", "--bins"]),
    )?;
    // tests/tests/dist.rs checks and runs the portable agent.
    crate::dist::run()?;
    let mut test = sh::cargo();
    test.current_dir(&root).args(["test", "--workspace"]);
    if !extra.is_empty() {
        test.arg("--").args(extra);
    }
    sh::run(&mut test)
}
