//! A built binary's options as clap prints them in `--help`, read back: each option's flag,
//! its environment variable, its default and whether it is required. The README check and
//! the settings contract test derive their lists of tunables from this, never from a hand
//! list.
//!
//! Must not: guess. A default is clap's own `[default: X]` line, or the same bracket stated
//! in the option's help text (the agent states its defaults there: they come from the
//! settings contract, not from clap); "required" is clap's usage line or the help text
//! saying "(required".
use std::process::{Command, Stdio};

/// One option of a subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    /// `--toxicity`.
    pub flag: String,
    /// `TOXICITY`, when the option reads the environment.
    pub env: Option<String>,
    /// The default, as clap or the help text states it.
    pub default: Option<String>,
    /// The option must be given.
    pub required: bool,
    /// Its help text, blanks folded.
    pub help: String,
}

/// The options of `BIN ARGS --help` (e.g. `("reset-agent", &["run"])`), run with an empty
/// environment so no value shows in `[env: NAME=...]`.
pub fn options(bin: &str, args: &[&str]) -> Vec<Opt> {
    let out = Command::new(crate::bin(bin))
        .args(args)
        .arg("--help")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{bin} {args:?} --help: {e}"));
    assert!(out.status.success(), "{bin} {args:?} --help failed");
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Parses clap's long help (`--help`): the usage line, then a block per option that starts
/// with its flags and holds its help text and `[env: ...]`, `[default: ...]` lines.
pub fn parse(help: &str) -> Vec<Opt> {
    let usage = help
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or("");
    // Required options are those the usage line names outside `[...]`.
    let required_flags: Vec<&str> = usage
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .collect();
    let mut opts: Vec<Opt> = Vec::new();
    let mut text: Vec<&str> = Vec::new();
    for line in help.lines() {
        let t = line.trim();
        if let Some(flag) = option_line(line) {
            finish(&mut opts, &mut text);
            opts.push(Opt {
                required: required_flags.contains(&flag),
                flag: flag.to_string(),
                env: None,
                default: None,
                help: String::new(),
            });
        } else if let Some(o) = opts.last_mut() {
            if let Some(env) = t.strip_prefix("[env: ") {
                o.env = env.split_once('=').map(|(name, _)| name.to_string());
            } else if t.starts_with("[default: ") && t.ends_with(']') {
                o.default = bracket(t, "[default: ");
            } else if !t.starts_with("[env: ") && !t.starts_with("[possible values: ") {
                text.push(t);
            }
        }
    }
    finish(&mut opts, &mut text);
    opts
}

/// Closes the last option's block: its help text, and what that text states.
fn finish(opts: &mut [Opt], text: &mut Vec<&str>) {
    if let Some(o) = opts.last_mut() {
        o.help = text
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // A short help has its brackets on the same line: `Text [default: 80] [env: PORT=]`.
        if o.env.is_none() {
            o.env = bracket(&o.help, "[env: ").and_then(|e| Some(e.split_once('=')?.0.to_string()));
        }
        if o.default.is_none() {
            o.default = bracket(&o.help, "[default: ");
        }
        o.required |= o.help.contains("(required");
    }
    text.clear();
}

/// `--flag` of a line that opens an option's block: `  -q, --quiet`, `      --x <X>`.
fn option_line(line: &str) -> Option<&str> {
    if !line.starts_with("  ") {
        return None;
    }
    let t = line.trim_start();
    let t = match t.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') => rest.split_once(", ")?.1,
        _ => t,
    };
    let flag = t.split_whitespace().next()?;
    (flag.starts_with("--") && flag.len() > 2).then_some(flag)
}

/// The text between `open` and the next `]` in `s`.
fn bracket(s: &str, open: &str) -> Option<String> {
    let rest = &s[s.find(open)? + open.len()..];
    Some(rest[..rest.find(']')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flags_envs_defaults_and_required() {
        let help = "Run it\n\nUsage: x run [OPTIONS] --url <URL>\n\nOptions:\n      \
                    --url <URL>\n          The URL\n          \n          [env: URL=]\n\n  \
                    -q, --quiet\n          No progress\n\n      --port <PORT>\n          \
                    A port [default: 80].\n          \n          [env: PORT=]\n\n      \
                    --mode <MODE>\n          A mode\n\n          Possible values:\n          \
                    - a: A\n          \n          [env: MODE=]\n          [default: a]\n\n      \
                    --user <USER>\n          The user (required: no default)\n          \
                    [env: USER=]\n      --short <S>\n          Short [default: 1] [env: SHORT=]\n  \
                    -h, --help\n          Print help\n";
        let o = parse(help);
        let flags: Vec<&str> = o.iter().map(|o| o.flag.as_str()).collect();
        assert_eq!(
            flags,
            [
                "--url", "--quiet", "--port", "--mode", "--user", "--short", "--help"
            ]
        );
        assert_eq!(o[0].env.as_deref(), Some("URL"));
        assert!(o[0].required && !o[1].required && !o[2].required);
        assert_eq!(o[1].env, None);
        assert_eq!(o[2].default.as_deref(), Some("80"), "stated in the text");
        assert_eq!(o[3].default.as_deref(), Some("a"), "clap's own");
        assert!(o[4].required, "the text says so");
        assert_eq!(o[2].help, "A port [default: 80].");
        assert_eq!(o[5].env.as_deref(), Some("SHORT"), "on the help line");
        assert_eq!(o[5].default.as_deref(), Some("1"));
    }
}
