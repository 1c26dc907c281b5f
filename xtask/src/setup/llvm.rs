//! Finding the pinned nightly's libLLVM for bpf-linker's build. The toolchain's lib/ holds the
//! real ELF (`libLLVM.so.23.1-rust-...`) beside a one-line GNU ld script
//! (`libLLVM-23-rust-...so`, `INPUT(...)`); which one a directory listing returns first depends
//! on the filesystem, so the choice is made by content, never by listing order.
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The real libLLVM shared object in a toolchain's lib/ directory.
pub fn libllvm_in(lib: &Path) -> anyhow::Result<PathBuf> {
    let names: Vec<String> = std::fs::read_dir(lib)
        .with_context(|| format!("list {}", lib.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("list {}", lib.display()))?;
    pick_libllvm(lib, &names)
}

/// What a candidate file is, judged by its content, never by its name or listing order.
#[derive(Debug, PartialEq, Eq)]
enum LibFile {
    /// An ELF shared object: what the linker needs.
    Elf,
    /// A GNU ld script (`INPUT(libLLVM.so.23.1-rust-...)`): names the real file.
    Script {
        input: Option<String>,
    },
    Other,
}

fn classify(path: &Path) -> std::io::Result<LibFile> {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)?
        .take(512)
        .read_to_end(&mut head)?;
    if head.starts_with(b"\x7fELF") {
        return Ok(LibFile::Elf);
    }
    let text = String::from_utf8_lossy(&head);
    let Some(start) = text.find("INPUT(").or_else(|| text.find("GROUP(")) else {
        return Ok(LibFile::Other);
    };
    let args = &text[start + 6..];
    let input = args[..args.find(')').unwrap_or(args.len())]
        .split(|c: char| c.is_whitespace() || c == ',')
        .find(|a| !a.is_empty() && *a != "AS_NEEDED" && *a != "(")
        .map(|a| a.trim_start_matches('(').to_owned());
    Ok(LibFile::Script { input })
}

/// Chooses libLLVM among `names` (a directory listing of `lib`, in any order): the one ELF
/// shared object whose name matches, else the file a matching linker script names. Several
/// distinct ELF candidates are an error, not a guess.
fn pick_libllvm(lib: &Path, names: &[String]) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<&String> = names
        .iter()
        .filter(|n| {
            n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
        })
        .collect();
    candidates.sort();
    let mut elves = Vec::new();
    let mut scripts = Vec::new();
    for name in &candidates {
        let path = lib.join(name);
        match classify(&path).with_context(|| format!("read {}", path.display()))? {
            LibFile::Elf => {
                let real = path.canonicalize().unwrap_or_else(|_| path.clone());
                if !elves.contains(&real) {
                    elves.push(real);
                }
            }
            LibFile::Script { input: Some(input) } => scripts.push((path, input)),
            LibFile::Script { input: None } | LibFile::Other => {}
        }
    }
    match elves.as_slice() {
        [one] => return Ok(one.clone()),
        [] => {}
        many => bail!(
            "{} holds several different libLLVM shared objects ({}); cannot tell which one the \
             nightly uses",
            lib.display(),
            many.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    if let Some((script, input)) = scripts.first() {
        let target = lib.join(input);
        if matches!(classify(&target), Ok(LibFile::Elf)) {
            return Ok(target);
        }
        bail!(
            "{} is a linker script naming {input}, which is not an ELF shared object in {}",
            script.display(),
            lib.display()
        );
    }
    bail!(
        "no libLLVM shared object in {} (looked at: {}); reinstall the nightly with \
         `rustup toolchain install --force` and rerun `cargo xtask setup`",
        lib.display(),
        if candidates.is_empty() {
            "nothing matching libLLVM*".to_owned()
        } else {
            candidates
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "libLLVM.so.23.1-rust-1.101.0-nightly";
    const SCRIPT: &str = "libLLVM-23-rust-1.101.0-nightly.so";

    /// A fake toolchain lib/: the real ELF and the one-line linker script, as rustup ships them.
    struct FakeLib(PathBuf);

    impl FakeLib {
        fn new(tag: &str, with_real: bool) -> FakeLib {
            let dir = std::env::temp_dir()
                .join(format!("reset-peer-fake-lib-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create fake lib");
            if with_real {
                let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
                elf.resize(4096, 0);
                std::fs::write(dir.join(REAL), elf).expect("write elf");
            }
            std::fs::write(dir.join(SCRIPT), format!("INPUT({REAL})\n")).expect("write script");
            std::fs::write(dir.join("librustc_driver-8ddbd174ff1ac129.so"), b"\x7fELF")
                .expect("write driver");
            FakeLib(dir)
        }
    }

    impl Drop for FakeLib {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(order: &[&str]) -> Vec<String> {
        order.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn picks_the_elf_whatever_the_listing_order() {
        let lib = FakeLib::new("order", true);
        for order in [
            [SCRIPT, REAL, "librustc_driver-8ddbd174ff1ac129.so"],
            [REAL, SCRIPT, "librustc_driver-8ddbd174ff1ac129.so"],
            ["librustc_driver-8ddbd174ff1ac129.so", SCRIPT, REAL],
        ] {
            let picked = pick_libllvm(&lib.0, &names(&order)).expect("a libLLVM");
            assert_eq!(
                picked.file_name().and_then(|n| n.to_str()),
                Some(REAL),
                "listing {order:?}"
            );
        }
    }

    #[test]
    fn follows_the_linker_script_when_the_elf_has_another_name() {
        let lib = FakeLib::new("script-only", false);
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(64, 0);
        // Only the script is listed as a candidate: the ELF is found through its INPUT().
        let real = "libLLVM.so.23.1-rust-1.101.0-nightly";
        std::fs::write(lib.0.join(real), &elf).expect("write");
        let picked = pick_libllvm(&lib.0, &names(&[SCRIPT])).expect("resolved through INPUT()");
        assert_eq!(picked, lib.0.join(real));
    }

    #[test]
    fn a_script_naming_nothing_real_is_an_error_naming_the_script() {
        let lib = FakeLib::new("dangling", false);
        let err = pick_libllvm(&lib.0, &names(&[SCRIPT]))
            .expect_err("no ELF")
            .to_string();
        assert!(err.contains(SCRIPT) && err.contains("not an ELF"), "{err}");
    }

    #[test]
    fn no_candidate_says_where_it_looked() {
        let lib = FakeLib::new("empty", false);
        let err = pick_libllvm(&lib.0, &names(&["libstd.so"]))
            .expect_err("nothing")
            .to_string();
        assert!(err.contains("no libLLVM shared object"), "{err}");
    }

    #[test]
    fn classify_reads_content_not_names() {
        let lib = FakeLib::new("classify", true);
        assert_eq!(classify(&lib.0.join(REAL)).expect("read"), LibFile::Elf);
        assert_eq!(
            classify(&lib.0.join(SCRIPT)).expect("read"),
            LibFile::Script {
                input: Some(REAL.to_owned())
            }
        );
    }
}
