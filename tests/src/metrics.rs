//! The one Prometheus / OpenMetrics text parser of the tests, the unit tests of both
//! binaries' metrics and the demo: strict (every line is a `# HELP|TYPE|UNIT|EOF` comment or a
//! `name{label="value",...} value` sample, names well formed, label values unescaped), and
//! non-panicking, so the demo can report a bad exposition instead of crashing.
//!
//! Must not: depend on either binary; it reads text only.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `reset_peer_flows_seen_total`.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// The samples, in order.
    pub samples: Vec<Sample>,
    /// The text ended with `# EOF` (OpenMetrics).
    pub eof: bool,
}

impl Exposition {
    /// The value of the sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.len() == labels.len() && has(s, labels))
            .map(|s| s.value)
    }

    /// The samples named `name` that carry (at least) `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.name == name && has(s, labels))
    }

    /// The sum over the samples named `name` that carry (at least) `labels`; `None` when
    /// there is none.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.matching(name, labels)
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    }
}

fn has(s: &Sample, labels: &[(&str, &str)]) -> bool {
    labels
        .iter()
        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

/// Parses an exposition; the error names the first line that is neither a comment nor a
/// sample, and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for line in text.lines() {
        let bad = |why: &str| Err(format!("{why} in line {line:?}"));
        if out.eof {
            return bad("text after # EOF");
        }
        if let Some(comment) = line.strip_prefix("# ") {
            match comment.split(' ').next() {
                Some("HELP" | "TYPE" | "UNIT") => continue,
                Some("EOF") if comment == "EOF" => out.eof = true,
                _ => return bad("an unknown comment"),
            }
            continue;
        }
        match sample(line) {
            Ok(s) => out.samples.push(s),
            Err(why) => return bad(why),
        }
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, &'static str> {
    let (series, value) = line.rsplit_once(' ').ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| "a bad value")?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, labels(rest)?),
    };
    if !is_name(name, true) {
        return Err("a bad metric name");
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"}`: the label set and its closing brace, escapes undone.
fn labels(mut rest: &str) -> Result<BTreeMap<String, String>, &'static str> {
    let mut out = BTreeMap::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return if after.is_empty() {
                Ok(out)
            } else {
                Err("text after the labels")
            };
        }
        let (key, after) = rest.split_once("=\"").ok_or("a bad label")?;
        if !is_name(key, false) {
            return Err("a bad label name");
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().ok_or("an unclosed label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("a bad escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    _ => return Err("a bad escape"),
                },
                (_, c) => value.push(c),
            }
        };
        out.insert(key.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_labels_and_eof() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
                    x_total{vm=\"a\",url=\"http://h/?q=\\\"1\\\",2\"} 3\n\
                    x_total{vm=\"b\"} 4\nh_bucket{le=\"+Inf\"} 1\nup 1\n# EOF\n";
        let e = parse(text).unwrap();
        assert!(e.eof);
        assert_eq!(e.value("x_total", &[("vm", "b")]), Some(4.0));
        assert_eq!(
            e.value("x_total", &[("vm", "a"), ("url", "http://h/?q=\"1\",2")]),
            Some(3.0)
        );
        assert_eq!(e.value("x_total", &[("vm", "a")]), None, "exact label set");
        assert_eq!(e.sum("x_total", &[]), Some(7.0));
        assert_eq!(e.sum("x_total", &[("vm", "a")]), Some(3.0));
        assert_eq!(e.sum("nope", &[]), None);
        assert_eq!(e.value("h_bucket", &[("le", "+Inf")]), Some(1.0));
        assert_eq!(e.value("up", &[]), Some(1.0));
    }

    #[test]
    fn refuses_what_is_not_an_exposition() {
        for bad in [
            "x 1 2 3\n",
            "x{a=\"1\" 1\n",
            "x{a=1} 1\n",
            "1x 1\n",
            "x{1a=\"b\"} 1\n",
            "x one\n",
            "# NOTE x\n",
            "# EOF\nx 1\n",
            "x{a=\"\\q\"} 1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse("# EOF\n").unwrap().samples, vec![]);
    }
}
