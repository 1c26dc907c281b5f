//! HTTP(S) front: POST /sdk (SOAP), GET /sdk/vimServiceVersions.xml, and the
//! /guestFile PUT/GET transfers. TLS uses a fresh self-signed certificate.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::dispatch;
use crate::model::{Sim, Transfer};

/// Largest upload accepted.
const MAX_UPLOAD: usize = 1 << 30;
/// Largest SOAP request accepted.
const MAX_REQUEST: usize = 16 << 20;

const VERSIONS: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<namespaces version="1.0">
 <namespace>
  <name>urn:vim25</name>
  <version>8.0.2.0</version>
  <priorVersions>
   <version>6.0</version>
   <version>6.5</version>
   <version>6.7</version>
   <version>6.7.1</version>
   <version>6.7.2</version>
   <version>6.7.3</version>
   <version>7.0.0.0</version>
   <version>7.0.1.0</version>
   <version>7.0.2.0</version>
   <version>7.0.3.0</version>
   <version>8.0.0.0</version>
   <version>8.0.1.0</version>
  </priorVersions>
 </namespace>
</namespaces>
"#;

#[derive(Clone)]
struct App {
    sim: Sim,
    scheme: &'static str,
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

/// A self-signed certificate for 127.0.0.1, ::1 and localhost.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// PEM of the certificate (give it to clients as a CA).
    pub cert_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl SelfSigned {
    /// Generate one.
    pub fn generate() -> Result<Self, ServeError> {
        let names = vec![
            "127.0.0.1".to_string(),
            "::1".to_string(),
            "localhost".to_string(),
        ];
        let ck = rcgen::generate_simple_self_signed(names)
            .map_err(|e| ServeError::Tls(e.to_string()))?;
        Ok(Self {
            cert_pem: ck.cert.pem(),
            cert_der: ck.cert.der().to_vec(),
            key_der: ck.signing_key.serialize_der(),
        })
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

fn router(app: App) -> Router {
    Router::new()
        .route("/sdk", post(soap))
        .route("/sdk/vimServiceVersions.xml", get(versions))
        .route("/guestFile", get(download).put(upload))
        .with_state(app)
}

/// Serve on `listener` until the process ends; TLS with `tls` unless `None`.
pub async fn serve(
    sim: Sim,
    listener: std::net::TcpListener,
    tls: Option<SelfSigned>,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    match tls {
        Some(t) => {
            let cfg =
                axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(t.server_config()?));
            let app = router(App {
                sim,
                scheme: "https",
            });
            axum_server::from_tcp_rustls(listener, cfg)
                .serve(app.into_make_service())
                .await?;
        }
        None => {
            let app = router(App {
                sim,
                scheme: "http",
            });
            let l = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(l, app).await?;
        }
    }
    Ok(())
}

async fn versions() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/xml")], VERSIONS)
}

async fn soap(State(app): State<App>, headers: HeaderMap, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(dispatch::session_from_cookie);
    let r = dispatch::handle(&app.sim, app.scheme, session.as_deref(), &bytes).await;
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

async fn upload(State(app): State<App>, Query(q): Query<TransferQuery>, body: Body) -> Response {
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

async fn download(State(app): State<App>, Query(q): Query<TransferQuery>) -> Response {
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
