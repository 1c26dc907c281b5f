//! HTTP(S) front: POST /sdk (SOAP), GET /sdk/vimServiceVersions.xml (as the profile says,
//! or 404), and the /guestFile PUT/GET transfers, on the SDK listener or, in "ESXi host"
//! mode, on the host's own listener. TLS uses fresh self-signed certificates. Every answered
//! request goes to the request log, if one is kept.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::dispatch;
use crate::model::{Sim, Transfer};
use crate::record::{Entry, redact_passwords};

/// Largest upload accepted.
const MAX_UPLOAD: usize = 1 << 30;
/// Largest SOAP request accepted.
const MAX_REQUEST: usize = 16 << 20;

#[derive(Clone)]
struct App {
    sim: Sim,
    scheme: &'static str,
    /// `vcenter` or `esx-host`, for the request log.
    listener: &'static str,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificate generation or TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The listener failed.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A self-signed certificate (for 127.0.0.1, ::1 and localhost unless named otherwise).
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// PEM of the certificate (give it to clients as a CA).
    pub cert_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl SelfSigned {
    /// Generate one for 127.0.0.1, ::1 and localhost.
    pub fn generate() -> Result<Self, ServeError> {
        Self::for_names(&["127.0.0.1", "::1", "localhost"])
    }

    /// Generate one for these names, as an ESXi host's certificate names the host.
    pub fn for_names(names: &[&str]) -> Result<Self, ServeError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| ServeError::Tls(e.to_string()))?;
        Ok(Self {
            cert_pem: ck.cert.pem(),
            cert_der: ck.cert.der().to_vec(),
            key_der: ck.signing_key.serialize_der(),
        })
    }

    /// The SHA-1 thumbprint as vCenter writes it (`AA:BB:...`, summary.config.sslThumbprint).
    pub fn thumbprint_sha1(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.cert_der);
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn server_config(&self) -> Result<rustls::ServerConfig, ServeError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServeError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(
                    self.cert_der.clone(),
                )],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into()),
            )
            .map_err(|e| ServeError::Tls(e.to_string()))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// The SDK listener: SOAP, the version document, and /guestFile unless transfers go to an
/// "ESXi host" (a vCenter does not serve them itself). Anything else is a recorded 404.
fn router(app: App) -> Router {
    let mut r = Router::new()
        .route("/sdk", post(soap))
        .route("/sdk/vimServiceVersions.xml", get(versions));
    if app.sim.profile.esx_host.is_none() {
        r = r.route("/guestFile", get(download).put(upload));
    }
    r.fallback(not_found).with_state(app)
}

/// Serve on `listener` until the process ends; TLS with `tls` unless `None`.
pub async fn serve(
    sim: Sim,
    listener: std::net::TcpListener,
    tls: Option<SelfSigned>,
) -> Result<(), ServeError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = router(App {
        sim,
        scheme,
        listener: "vcenter",
    });
    run(app, listener, tls).await
}

/// Serve the "ESXi host" of [`crate::profile::EsxHost`] on its own listener: /guestFile
/// transfers only, over TLS with the host's own certificate.
pub async fn serve_esx_host(
    sim: Sim,
    listener: std::net::TcpListener,
    tls: SelfSigned,
) -> Result<(), ServeError> {
    let app = Router::new()
        .route("/guestFile", get(download).put(upload))
        .fallback(not_found)
        .with_state(App {
            sim,
            scheme: "https",
            listener: "esx-host",
        });
    run(app, listener, Some(tls)).await
}

async fn run(
    app: Router,
    listener: std::net::TcpListener,
    tls: Option<SelfSigned>,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    match tls {
        Some(t) => {
            let cfg =
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(t.server_config()?));
            axum_server::from_tcp_rustls(listener, cfg)
                .serve(app.into_make_service())
                .await?;
        }
        None => {
            let l = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(l, app).await?;
        }
    }
    Ok(())
}

fn record(app: &App, http: String, status: StatusCode, in_flight: Option<usize>) {
    app.sim.record(&Entry {
        listener: app.listener,
        http,
        status: status.as_u16(),
        in_flight,
        ..Entry::default()
    });
}

async fn versions(State(app): State<App>) -> Response {
    let http = "GET /sdk/vimServiceVersions.xml".to_string();
    if app.sim.profile.no_versions_doc {
        record(&app, http, StatusCode::NOT_FOUND, None);
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    record(&app, http, StatusCode::OK, None);
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        app.sim.profile.product.versions_doc(),
    )
        .into_response()
}

async fn not_found(State(app): State<App>, method: Method, uri: Uri) -> Response {
    record(
        &app,
        format!("{method} {}", uri.path()),
        StatusCode::NOT_FOUND,
        None,
    );
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

async fn soap(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let arrival = app.sim.arrive();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(dispatch::session_from_cookie);
    let r = dispatch::handle(&app.sim, app.scheme, session.as_deref(), &bytes).await;
    let body = String::from_utf8_lossy(&bytes);
    app.sim.record(&Entry {
        listener: app.listener,
        http: "POST /sdk".into(),
        status: r.status,
        soap_action: headers.get("soapaction").and_then(|v| v.to_str().ok()),
        method: Some(r.method.as_str()).filter(|m| !m.is_empty()),
        body: Some(redact_passwords(&body)),
        in_flight: Some(arrival.count),
    });
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        r.body,
    )
        .into_response();
    let cookie = match (&r.new_session, r.logged_out) {
        (Some(key), _) => {
            let secure = if app.scheme == "https" {
                " Secure;"
            } else {
                ""
            };
            Some(format!(
                r#"vmware_soap_session="{key}"; Path=/; HttpOnly;{secure}"#
            ))
        }
        (None, true) => Some(r#"vmware_soap_session=""; Path=/; Max-Age=0"#.to_string()),
        _ => None,
    };
    if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

#[derive(serde::Deserialize)]
struct TransferQuery {
    token: Option<String>,
}

async fn upload(State(app): State<App>, q: Query<TransferQuery>, body: Body) -> Response {
    let arrival = app.sim.arrive();
    let r = put_file(&app, q, body).await;
    record(
        &app,
        "PUT /guestFile".into(),
        r.status(),
        Some(arrival.count),
    );
    r
}

async fn download(State(app): State<App>, q: Query<TransferQuery>) -> Response {
    let arrival = app.sim.arrive();
    let r = get_file(&app, q).await;
    record(
        &app,
        "GET /guestFile".into(),
        r.status(),
        Some(arrival.count),
    );
    r
}

async fn put_file(app: &App, Query(q): Query<TransferQuery>, body: Body) -> Response {
    let Some(Transfer::Upload { path, mode, size }) =
        q.token.as_deref().and_then(|t| app.sim.take_transfer(t))
    else {
        return (StatusCode::NOT_FOUND, "unknown or used transfer token").into_response();
    };
    let limit = usize::try_from(size)
        .unwrap_or(MAX_UPLOAD)
        .clamp(1, MAX_UPLOAD);
    let Ok(data) = axum::body::to_bytes(body, limit).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "upload larger than fileSize").into_response();
    };
    if let Err(e) = tokio::fs::write(&path, &data).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    if let Some(m) = mode {
        use std::os::unix::fs::PermissionsExt as _;
        if let Err(e) =
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(m & 0o7777)).await
        {
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    }
    StatusCode::OK.into_response()
}

async fn get_file(app: &App, Query(q): Query<TransferQuery>) -> Response {
    let Some(Transfer::Download { path }) =
        q.token.as_deref().and_then(|t| app.sim.take_transfer(t))
    else {
        return (StatusCode::NOT_FOUND, "unknown or used transfer token").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(data) => ([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}
