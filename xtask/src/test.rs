//! `cargo xtask test`: the whole gate, in the order that fails fastest. A failing step is named
//! with the command that reruns just that step.
use crate::sh;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    let root = sh::root();
    sh::step("test step `fmt`", "cargo fmt --all (then rerun)", || {
        sh::run(
            sh::cargo()
                .current_dir(&root)
                .args(["fmt", "--all", "--", "--check"]),
        )
    })?;
    sh::step(
        "test step `clippy`",
        "cargo clippy --workspace --all-targets -- -D warnings",
        || {
            sh::run(sh::cargo().current_dir(&root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        },
    )?;
    // Licenses, bans, sources; advisories against github.com or the offline snapshot.
    sh::step("test step `deny`", "cargo xtask deny", crate::deny::run)?;
    // The e2e tests run the workspace's binaries (agent, controller, simulator, service).
    sh::step(
        "test step `build`",
        "cargo build --workspace --bins",
        || {
            sh::run(
                sh::cargo()
                    .current_dir(&root)
                    .args(["build", "--workspace", "--bins"]),
            )
        },
    )?;
    // tests/tests/dist.rs checks and runs the portable agent; tests/tests/image.rs the image
    // (which carries that agent).
    sh::step("test step `dist`", "cargo xtask dist", || {
        crate::dist::run().map(drop)
    })?;
    sh::step("test step `image`", "cargo xtask image", || {
        crate::image::run().map(drop)
    })?;
    let mut test = sh::cargo();
    test.current_dir(&root).args(["test", "--workspace"]);
    if !extra.is_empty() {
        test.arg("--").args(extra);
    }
    sh::step(
        "test step `cargo test` (the failing tests are listed above)",
        "cargo xtask test <test name>",
        || sh::run(&mut test),
    )
}
