//! The HTTP side of the client: TLS policy, URL handling, bounded SOAP round trips
//! and the session cookie (reqwest's cookie store keeps `vmware_soap_session`).

use std::time::Duration;

use reqwest::Url;

use super::error::{Context, VcError};
use super::host_routes::HostClients;
use super::soap::{self, Request};
use super::versions::{self, Choice, FALLBACK_VERSION, Negotiation, VersionSource};
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

/// `<sdk>/vimServiceVersions.xml`: beside the SDK endpoint, under it (`Url::join` would
/// replace the last path segment, `sdk`).
pub fn versions_url(sdk: &Url) -> Url {
    let mut u = sdk.clone();
    let path = format!(
        "{}/vimServiceVersions.xml",
        sdk.path().trim_end_matches('/')
    );
    u.set_path(&path);
    u
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

/// An HTTP client bound to one vCenter SDK endpoint.
#[derive(Debug, Clone)]
pub struct Transport {
    http: reqwest::Client,
    sdk: Url,
    soap_action: String,
    /// GOVC_INSECURE.
    insecure: bool,
    /// Clients for /guestFile transfers to ESXi hosts named by vCenter, pinned to each
    /// host's certificate thumbprint.
    hosts: HostClients,
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
            soap_action: soap::soap_action(FALLBACK_VERSION),
            insecure: opts.insecure,
            hosts: HostClients::default(),
        })
    }

    /// Choose the API version from `<sdk>/vimServiceVersions.xml` (see [`versions`]) and
    /// speak it in every later SOAPAction; fall back to [`FALLBACK_VERSION`], with a warning,
    /// when the document cannot be had. This is the first request: an unreachable or silent
    /// server fails here, within [`FIRST_CALL_TIMEOUT`]; a server whose document lists only
    /// releases older than 5.0 is refused here.
    pub async fn negotiate_version(&mut self) -> Result<Negotiation, VcError> {
        let url = versions_url(&self.sdk);
        let resp = self
            .http
            .get(url.clone())
            .timeout(FIRST_CALL_TIMEOUT)
            .send()
            .await
            .map_err(|e| VcError::from_transport(self.sdk.as_str(), &e))?;
        let doc = if resp.status().is_success() {
            read_bounded(resp, 64 << 10, "vimServiceVersions.xml")
                .await
                .map_err(|_| "its body could not be read".to_string())
                .and_then(|body| versions::parse(&body))
        } else {
            Err(format!("it answered HTTP {}", resp.status()))
        };
        let negotiation = match doc.map(|d| versions::choose(&d)) {
            Ok(Choice::Speak { version, why }) => {
                tracing::debug!(url = %url, version = %version, why = %why, "API version chosen");
                Negotiation {
                    api_version: version,
                    source: VersionSource::Document,
                    reason: why,
                }
            }
            Ok(Choice::TooOld { newest }) => {
                return Err(VcError::Unsupported {
                    server: format!("the server at {}", self.sdk),
                    reason: format!(
                        "the newest API version it lists in {url} is {newest}, and guest operations need vSphere API {} or newer: upgrade the server, or point GOVC_URL at a newer vCenter that manages these VMs",
                        versions::MIN_VERSION
                    ),
                });
            }
            Ok(Choice::NoRelease) => self.fall_back(&url, "it lists no release number".into()),
            Err(why) => self.fall_back(&url, why),
        };
        self.soap_action = soap::soap_action(&negotiation.api_version);
        Ok(negotiation)
    }

    fn fall_back(&self, url: &Url, why: String) -> Negotiation {
        tracing::warn!(
            url = %url,
            reason = %why,
            "cannot read the API versions the server speaks: falling back to vim25 {FALLBACK_VERSION} (every call this client makes exists since {})",
            versions::MIN_VERSION
        );
        Negotiation {
            api_version: FALLBACK_VERSION.to_string(),
            source: VersionSource::Fallback,
            reason: format!("{url}: {why}"),
        }
    }

    /// GOVC_INSECURE.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// The pinned clients for ESXi hosts.
    pub fn host_clients(&self) -> &HostClients {
        &self.hosts
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
    fn versions_document_is_under_the_sdk_path() {
        let at = |u: &str| versions_url(&sdk_url(u).unwrap()).to_string();
        assert_eq!(
            at("vc.example"),
            "https://vc.example/sdk/vimServiceVersions.xml"
        );
        assert_eq!(
            at("https://vc.example:8443/sdk"),
            "https://vc.example:8443/sdk/vimServiceVersions.xml"
        );
        assert_eq!(
            at("https://vc.example/proxy/sdk/"),
            "https://vc.example/proxy/sdk/vimServiceVersions.xml"
        );
    }
}
