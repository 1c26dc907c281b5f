//! Which vim25 version to speak. The server publishes the versions it speaks in
//! `<sdk>/vimServiceVersions.xml`: a current `<version>` plus `<priorVersions>`. pyvmomi walks
//! its own versions, newest first, and speaks the first one the document lists (current or
//! prior); this does the same. A current version may be an internal id rather than a release
//! (vCenter 8.0.3 publishes `uA046D008` and lists 8.0.2.0 first among its prior versions):
//! anything that is not a dotted number is skipped. Pure functions, no I/O.

use std::cmp::Ordering;

use serde::Serialize;

use super::xml;

/// Spoken when the document cannot be had. Every call this client makes exists unchanged
/// since vSphere API 5.0, so any version a server speaks works.
pub const FALLBACK_VERSION: &str = "6.7";

/// The oldest API with guest operations (GuestOperationsManager, vSphere 5.0); every other
/// call this client makes is older (ViewManager 2.5, RetrievePropertiesEx 4.1).
pub const MIN_VERSION: &str = "5.0";

/// The vim25 releases this client knows, newest first (the ones pyvmomi and govmomi name).
pub const KNOWN_VERSIONS: &[&str] = &[
    "9.0.0.0", "8.0.3.0", "8.0.2.0", "8.0.1.0", "8.0.0.2", "8.0.0.1", "8.0.0.0", "7.0.3.2",
    "7.0.3.1", "7.0.3.0", "7.0.2.1", "7.0.2.0", "7.0.1.1", "7.0.1.0", "7.0.0.2", "7.0.0.0",
    "6.9.1", "6.8.7", "6.7.3", "6.7.2", "6.7.1", "6.7", "6.5", "6.0", "5.5", "5.1", "5.0",
];

/// How the spoken version was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionSource {
    /// Chosen from `<sdk>/vimServiceVersions.xml`.
    Document,
    /// The document could not be had: [`FALLBACK_VERSION`].
    Fallback,
}

/// The negotiated version, as the report records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiation {
    /// The version in every SOAPAction (`urn:vim25/<version>`).
    pub api_version: String,
    /// Where it came from.
    pub source: VersionSource,
    /// Why this one: how it was chosen, or why the document could not be used.
    pub reason: String,
}

/// The `urn:vim25` namespace of a version document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVersions {
    /// `<version>`: the current version, possibly an internal id.
    pub current: String,
    /// `<priorVersions><version>`, in document order.
    pub prior: Vec<String>,
}

impl ServiceVersions {
    /// Every version listed, current first.
    pub fn listed(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.as_str()).chain(self.prior.iter().map(String::as_str))
    }
}

/// Read a vimServiceVersions.xml document; the error says why it is not one.
pub fn parse(doc: &[u8]) -> Result<ServiceVersions, String> {
    let root = xml::parse(doc).map_err(|e| format!("not XML ({e})"))?;
    if root.name != "namespaces" {
        return Err(format!(
            "the root element is <{}>, not <namespaces>",
            root.name
        ));
    }
    let ns = root
        .children_named("namespace")
        .find(|n| n.child_text("name").map(str::trim) == Some("urn:vim25"))
        .ok_or("it lists no urn:vim25 namespace")?;
    let current = ns
        .child_text("version")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or("the urn:vim25 namespace has no <version>")?
        .to_string();
    let prior = ns
        .child("priorVersions")
        .map(|p| {
            p.children_named("version")
                .map(|v| v.text.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(ServiceVersions { current, prior })
}

/// A release number such as `8.0.2.0` as its components; `None` for internal ids
/// (`uA046D008`) and anything else that is not 1 to 4 dot-separated numbers.
pub fn release(v: &str) -> Option<Vec<u32>> {
    let parts: Option<Vec<u32>> = v
        .split('.')
        .map(|p| {
            (!p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect();
    parts.filter(|p| (1..=4).contains(&p.len()))
}

/// Order two release numbers (`6.7` == `6.7.0` < `6.7.1`).
pub fn cmp_release(a: &[u32], b: &[u32]) -> Ordering {
    let n = a.len().max(b.len());
    let at = |v: &[u32], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Whether release `v` is older than [`MIN_VERSION`] (false for non-releases).
pub fn older_than_min(v: &str) -> bool {
    let min = release(MIN_VERSION).unwrap_or_default();
    release(v).is_some_and(|r| cmp_release(&r, &min).is_lt())
}

/// What the document leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Speak `version`; `why` says how it was chosen (for the debug log and the report).
    Speak {
        /// The version for SOAPAction.
        version: String,
        /// How it was chosen.
        why: String,
    },
    /// Every release listed is older than [`MIN_VERSION`]: the server cannot run guest
    /// operations.
    TooOld {
        /// The newest release listed.
        newest: String,
    },
    /// The document lists no release at all.
    NoRelease,
}

/// Choose the version to speak: the newest release the document lists that this client
/// knows; if it lists only releases newer than any known one, the newest of those (the
/// calls used are unchanged since 5.0); if only releases older than 5.0, [`Choice::TooOld`].
pub fn choose(doc: &ServiceVersions) -> Choice {
    let mut releases: Vec<(Vec<u32>, &str)> = Vec::new();
    let mut skipped: Vec<&str> = Vec::new();
    for v in doc.listed() {
        match release(v) {
            Some(r) => releases.push((r, v)),
            None => skipped.push(v),
        }
    }
    let skipped_note = if skipped.is_empty() {
        String::new()
    } else {
        format!("; skipped {} (not release numbers)", skipped.join(", "))
    };
    let listed = releases.len();
    let newest_known = KNOWN_VERSIONS.iter().find(|k| {
        let k = release(k).unwrap_or_default();
        releases.iter().any(|(r, _)| cmp_release(r, &k).is_eq())
    });
    if let Some(known) = newest_known {
        return Choice::Speak {
            version: (*known).to_string(),
            why: format!(
                "the newest of the {listed} releases the server lists that this client knows{skipped_note}"
            ),
        };
    }
    let Some(newest) = releases
        .iter()
        .max_by(|a, b| cmp_release(&a.0, &b.0))
        .map(|(_, text)| *text)
    else {
        return Choice::NoRelease;
    };
    if older_than_min(newest) {
        return Choice::TooOld {
            newest: newest.to_string(),
        };
    }
    Choice::Speak {
        version: newest.to_string(),
        why: format!(
            "the newest of the {listed} releases the server lists; all are newer than the releases this client knows, and the calls it makes are unchanged since {MIN_VERSION}{skipped_note}"
        ),
    }
}
