//! The HTTP side of the client: TLS policy, URL handling, bounded SOAP round trips
//! and the session cookie (reqwest's cookie store keeps `vmware_soap_session`).

use std::time::Duration;

use reqwest::Url;

use super::error::{Context, VcError};
use super::soap::{self, Request};
use super::xml::Element;

/// Largest SOAP reply accepted.
pub const MAX_REPLY_BYTES: usize = 32 << 20;
/// Time allowed to open a TCP+TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one SOAP call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for the first call (RetrieveServiceContent): an unreachable or
/// silent GOVC_URL must fail well within 10 s.
pub const FIRST_CALL_TIMEOUT: Duration = Duration::from_secs(7);

/// How to reach and trust vCenter.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// GOVC_URL as given: `https://host/sdk`, `host`, `host:port`.
    pub url: String,
    /// GOVC_INSECURE: skip certificate verification.
    pub insecure: bool,
    /// GOVC_TLS_CA_CERTS: extra PEM roots.
    pub ca_certs: Option<std::path::PathBuf>,
}

/// Turn GOVC_URL into the SDK endpoint URL.
pub fn sdk_url(raw: &str) -> Result<Url, VcError> {
    let bad = |reason: &str| VcError::BadUrl {
        url: redact_userinfo(raw),
        reason: reason.to_string(),
    };
    let raw_trim = raw.trim();
    if raw_trim.is_empty() {
        return Err(bad("it is empty"));
    }
    let with_scheme = if raw_trim.contains("://") {
        raw_trim.to_string()
    } else {
        format!("https://{raw_trim}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("the scheme must be https or http"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL are not accepted; use GOVC_USERNAME and GOVC_PASSWORD",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/sdk");
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Hide `user:pass@` in a URL-ish string before it goes into a message.
fn redact_userinfo(raw: &str) -> String {
    let (scheme, rest) = raw.split_once("://").map_or(("", raw), |(s, r)| (s, r));
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***@{}", &rest[at + 1..])
        }
        None => raw.to_string(),
    }
}

/// Rewrite a /guestFile URL whose host is `*` to the host (and port) we called.
pub fn transfer_url(raw: &str, sdk: &Url) -> Result<Url, String> {
    // `*` is not a valid host for the URL parser: substitute before parsing.
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("transfer URL {raw:?} has no scheme"))?;
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let is_star = host == "*" || host.starts_with("*:");
    let authority = if is_star {
        match (sdk.host_str(), sdk.port()) {
            (Some(h), Some(p)) => format!("{}:{p}", bracket(h)),
            (Some(h), None) => bracket(h),
            _ => return Err("SDK URL has no host".into()),
        }
    } else {
        authority.to_string()
    };
    Url::parse(&format!("{scheme}://{authority}{tail}")).map_err(|e| format!("{raw:?}: {e}"))
}

fn bracket(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// An HTTP client bound to one vCenter SDK endpoint.
#[derive(Debug, Clone)]
pub struct Transport {
    http: reqwest::Client,
    sdk: Url,
    soap_action: String,
}

impl Transport {
    /// Build the HTTP client: rustls, cookie store, timeouts, trust policy.
    pub fn new(opts: &ConnectOptions) -> Result<Self, VcError> {
        let sdk = sdk_url(&opts.url)?;
        let mut b = reqwest::Client::builder()
            .cookie_store(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("reset-controller/", env!("CARGO_PKG_VERSION")));
        if sdk.scheme() == "http" {
            tracing::warn!(url = %sdk, "plain HTTP: vCenter credentials travel unencrypted");
        } else if opts.insecure {
            tracing::warn!(
                url = %sdk,
                "GOVC_INSECURE=true: vCenter's TLS certificate is not verified"
            );
        }
        if opts.insecure {
            b = b.danger_accept_invalid_certs(true);
        } else if let Some(path) = &opts.ca_certs {
            let pem = std::fs::read(path).map_err(|e| VcError::CaCerts {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| VcError::CaCerts {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(VcError::CaCerts {
                    path: path.display().to_string(),
                    reason: "no PEM certificate in it".into(),
                });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| VcError::Tls {
            url: sdk.to_string(),
            reason: super::error::chain(&e),
        })?;
        Ok(Self {
            http,
            sdk,
            soap_action: soap::soap_action(soap::FALLBACK_VERSION),
        })
    }

    /// Speak the newest API version the server publishes in
    /// `/sdk/vimServiceVersions.xml` (as pyvmomi does); keep the fallback if it
    /// publishes none. This is the first request: an unreachable or silent server
    /// fails here, within [`FIRST_CALL_TIMEOUT`].
    pub async fn negotiate_version(&mut self) -> Result<Option<String>, VcError> {
        let Ok(url) = self.sdk.join("vimServiceVersions.xml") else {
            return Ok(None);
        };
        let resp = self
            .http
            .get(url)
            .timeout(FIRST_CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| VcError::from_transport(self.sdk.as_str(), &e))?;
        if !resp.status().is_success() {
            return Ok(None);
        }
        let Ok(doc) = read_bounded(resp, 64 << 10, "vimServiceVersions.xml").await else {
            return Ok(None);
        };
        Ok(soap::parse_service_versions(&doc).inspect(|v| {
            self.soap_action = soap::soap_action(v);
        }))
    }

    /// The SDK endpoint.
    pub fn sdk(&self) -> &Url {
        &self.sdk
    }

    /// The underlying HTTP client, for /guestFile transfers.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One SOAP round trip; faults become [`VcError`] worded with `cx`.
    pub async fn call(&self, req: Request, cx: Context<'_>) -> Result<Element, VcError> {
        self.call_within(req, cx, CALL_TIMEOUT).await
    }

    /// [`Transport::call`] with its own time limit.
    pub async fn call_within(
        &self,
        req: Request,
        cx: Context<'_>,
        limit: Duration,
    ) -> Result<Element, VcError> {
        let method = req.method();
        let cx = Context { method, ..cx };
        let resp = self
            .http
            .post(self.sdk.clone())
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", &self.soap_action)
            .body(req.into_envelope())
            .timeout(limit)
            .send()
            .await
            .map_err(|e| VcError::from_transport(self.sdk.as_str(), &e))?;
        let status = resp.status();
        let body = read_bounded(resp, MAX_REPLY_BYTES, method)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => VcError::TooLarge {
                    what: method.to_string(),
                    limit: MAX_REPLY_BYTES,
                },
                ReadError::Http(e) => VcError::from_transport(self.sdk.as_str(), &e),
            })?;
        if !(status.is_success() || status.as_u16() == 500) {
            return Err(VcError::Protocol {
                method: method.to_string(),
                reason: format!("HTTP {status} from {}", self.sdk),
            });
        }
        soap::decode_reply(&body, method).map_err(|e| VcError::from_decode(e, cx))
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the limit.
    TooLarge,
    /// The transport failed mid-body.
    Http(reqwest::Error),
}

/// Read a response body, refusing more than `limit` bytes.
pub async fn read_bounded(
    mut resp: reqwest::Response,
    limit: usize,
    _what: &str,
) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if out.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn govc_url_forms() {
        assert_eq!(
            sdk_url("vc.example").unwrap().as_str(),
            "https://vc.example/sdk"
        );
        assert_eq!(
            sdk_url("127.0.0.1:8989").unwrap().as_str(),
            "https://127.0.0.1:8989/sdk"
        );
        assert_eq!(
            sdk_url("http://127.0.0.1:1/sdk").unwrap().as_str(),
            "http://127.0.0.1:1/sdk"
        );
        assert_eq!(
            sdk_url("https://[::1]:9/").unwrap().as_str(),
            "https://[::1]:9/sdk"
        );
        assert!(matches!(sdk_url(""), Err(VcError::BadUrl { .. })));
        assert!(matches!(
            sdk_url("ftp://x/sdk"),
            Err(VcError::BadUrl { .. })
        ));
        let e = sdk_url("https://u:p@vc/sdk").unwrap_err().to_string();
        assert!(e.contains("GOVC_USERNAME") && !e.contains(":p@"), "{e}");
        let e = sdk_url("u:secret@vc").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn star_host_is_replaced_with_called_host_and_port() {
        let sdk = sdk_url("https://127.0.0.1:8443/sdk").unwrap();
        let u = transfer_url("https://*:443/guestFile?id=1&token=abc", &sdk).unwrap();
        assert_eq!(
            u.as_str(),
            "https://127.0.0.1:8443/guestFile?id=1&token=abc"
        );
        let u = transfer_url("https://*/guestFile?id=1", &sdk).unwrap();
        assert_eq!(u.as_str(), "https://127.0.0.1:8443/guestFile?id=1");
        let u = transfer_url("https://esx1.lab:443/guestFile?id=2", &sdk).unwrap();
        assert_eq!(u.host_str(), Some("esx1.lab"));
        let v6 = sdk_url("https://[::1]:9/sdk").unwrap();
        let u = transfer_url("https://*/guestFile?x", &v6).unwrap();
        assert_eq!(u.as_str(), "https://[::1]:9/guestFile?x");
        assert!(transfer_url("no-scheme", &sdk).is_err());
    }
}
