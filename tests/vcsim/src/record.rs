//! The request log (`--request-log FILE`): one JSON object per line for every HTTP request
//! the simulator answers, so tests can check what a client really sent: the SOAPAction of
//! each call (the API version it negotiated), the SOAP body (passwords replaced), which path
//! it fetched the version document from, which listener a /guestFile transfer reached, and
//! how many requests were in flight when each arrived.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

/// One answered request.
#[derive(Debug, Default, serde::Serialize)]
pub struct Entry<'a> {
    /// `vcenter` (the SDK listener) or `esx-host` (the transfer listener).
    pub listener: &'a str,
    /// `POST /sdk`, `GET /sdk/vimServiceVersions.xml`, `PUT /guestFile`, ...
    pub http: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The SOAPAction header as sent (quotes included), for SOAP calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soap_action: Option<&'a str>,
    /// The vim25 method, for SOAP calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    /// The SOAP request body, with every `<password>` replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// SOAP calls and /guestFile transfers being answered when this one arrived, itself
    /// included: the client's concurrency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
}

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct RequestLog(Mutex<File>);

impl RequestLog {
    /// Create (truncate) the file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self(Mutex::new(File::create(path)?)))
    }

    /// Append one entry; a failed write is logged, never fatal.
    pub fn write(&self, e: &Entry<'_>) {
        let mut line = match serde_json::to_string(e) {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "request log entry not encodable");
                return;
            }
        };
        line.push('\n');
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = f.write_all(line.as_bytes()).and_then(|()| f.flush()) {
            tracing::warn!(error = %err, "cannot write the request log");
        }
    }
}

/// The body with the text of every `<password>` element (any prefix) replaced by `(redacted)`.
pub fn redact_passwords(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("password>") {
        let open_end = i + "password>".len();
        let tag_start = rest[..i].rfind('<').unwrap_or(i);
        let is_open = !rest[tag_start..].starts_with("</")
            && rest[tag_start + 1..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_');
        out.push_str(&rest[..open_end]);
        rest = &rest[open_end..];
        if is_open && let Some(close) = rest.find("</") {
            out.push_str("(redacted)");
            rest = &rest[close..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_replaced_and_nothing_else() {
        assert_eq!(
            redact_passwords(
                "<Login><userName>a</userName><password>s&amp;cret</password></Login>"
            ),
            "<Login><userName>a</userName><password>(redacted)</password></Login>"
        );
        assert_eq!(
            redact_passwords(
                "<auth><username>root</username><vim:password>x</vim:password></auth><password></password>"
            ),
            "<auth><username>root</username><vim:password>(redacted)</vim:password></auth><password>(redacted)</password>"
        );
        assert_eq!(redact_passwords("<a>no secrets</a>"), "<a>no secrets</a>");
    }
}
