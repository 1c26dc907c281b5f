//! Session lifecycle: RetrieveServiceContent, Login (the reply's
//! `vmware_soap_session` cookie is kept by the transport), Logout, and riding out a
//! vCenter restart: calls made through [`Session::call`] retry with backoff while
//! vCenter is unreachable (bounded by [`Reconnect::budget`]) and log in again when
//! vCenter no longer knows the session.
//!
//! One session serves every VM of a run, and its clones share a [`CallLimit`]: at most
//! VC_CONCURRENCY requests (SOAP calls through [`Session::call`], file transfers holding
//! [`Session::permit`]) are in flight at once, so many VMs do not flood a shared vCenter.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{ConnectOptions, Transport};
use super::compat::{self, ServerReport};
use super::error::{Context, VcError};
use super::service::{ServiceContent, parse_service_content};
use super::soap::{MoRef, Request};
use super::versions::Negotiation;
use super::xml::Element;
use crate::secret::Secret;

/// First wait before retrying a call that could not reach vCenter; doubles up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long to keep trying when vCenter goes away mid-run.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    /// Total time one call may spend retrying; zero disables retries.
    pub budget: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(300),
        }
    }
}

/// Calls that change nothing when repeated, so they may be retried even when the
/// connection broke after the request was sent. Everything else (StartProgramInGuest,
/// uploads, Login) is retried only when the request provably never left.
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "RetrieveServiceContent"
            | "RetrievePropertiesEx"
            | "RetrieveProperties"
            | "ContinueRetrievePropertiesEx"
            | "ListProcessesInGuest"
            | "ValidateCredentialsInGuest"
            | "InitiateFileTransferFromGuest"
            | "ChangeFileAttributesInGuest"
            | "TerminateProcessInGuest"
            | "DeleteDirectoryInGuest"
            | "DeleteFileInGuest"
            | "Logout"
    )
}

/// The most vCenter requests in flight at once, shared by every clone of a session.
#[derive(Debug, Clone)]
pub struct CallLimit(Arc<tokio::sync::Semaphore>);

impl CallLimit {
    /// At most `n` requests at once (at least one).
    pub fn new(n: usize) -> CallLimit {
        CallLimit(Arc::new(tokio::sync::Semaphore::new(n.max(1))))
    }

    /// Wait for a slot; it is free again when the permit drops.
    pub async fn acquire(&self) -> tokio::sync::OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.0.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable!("the call limit's semaphore is never closed"),
        }
    }
}

/// What a second login needs; the password never leaves this struct except in the
/// Login request body.
#[derive(Debug)]
struct Relogin {
    password: Secret,
    reconnect: Reconnect,
    /// Serialises re-logins: concurrent VM tasks that all see NotAuthenticated log in
    /// once. Holds the number of logins so far.
    logins: tokio::sync::Mutex<u64>,
}

/// Encode a Login request. The password is only ever in this request body.
pub fn login_request(sm: &MoRef, user: &str, password: &str) -> Request {
    Request::new("Login", sm)
        .text("userName", user)
        .text("password", password)
}

/// A logged-in vCenter session.
#[derive(Debug, Clone)]
pub struct Session {
    transport: Transport,
    content: ServiceContent,
    negotiation: Negotiation,
    user: String,
    relogin: Option<Arc<Relogin>>,
    /// VC_CONCURRENCY; none for a session made by [`Session::login`] alone.
    limit: Option<CallLimit>,
}

impl Session {
    /// Connect, read the ServiceContent and log in; later calls through
    /// [`Session::call`] ride out a vCenter restart as `reconnect` allows, at most
    /// `concurrency` at once over all clones. The first login is never retried: a wrong
    /// GOVC_URL fails at once.
    pub async fn login_resilient(
        opts: &ConnectOptions,
        user: &str,
        password: &Secret,
        reconnect: Reconnect,
        concurrency: usize,
    ) -> Result<Self, VcError> {
        let mut s = Self::login(opts, user, password.expose()).await?;
        s.relogin = Some(Arc::new(Relogin {
            password: password.clone(),
            reconnect,
            logins: tokio::sync::Mutex::new(1),
        }));
        s.limit = Some(CallLimit::new(concurrency));
        Ok(s)
    }

    /// A slot for one request to vCenter or its hosts (a file transfer), under the session's
    /// VC_CONCURRENCY; `None` for a session without a limit.
    pub async fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.limit {
            Some(l) => Some(l.acquire().await),
            None => None,
        }
    }

    /// Connect, choose the API version, read the ServiceContent, refuse a server that cannot
    /// run guest operations (before sending credentials where it can: see [`compat`]), and
    /// log in (no reconnection).
    pub async fn login(opts: &ConnectOptions, user: &str, password: &str) -> Result<Self, VcError> {
        let mut transport = Transport::new(opts)?;
        let negotiation = transport.negotiate_version().await?;
        let si = MoRef::new("ServiceInstance", "ServiceInstance");
        let reply = transport
            .call(
                Request::new("RetrieveServiceContent", &si),
                Context::default(),
            )
            .await?;
        let content = parse_service_content(&reply).map_err(|reason| VcError::Protocol {
            method: "RetrieveServiceContent".into(),
            reason,
        })?;
        tracing::debug!(
            server = %content.about.full_name,
            api_type = %content.about.api_type,
            api = %content.about.api_version,
            speaking = %negotiation.api_version,
            "service content"
        );
        compat::check_service(transport.sdk().as_str(), &content)?;
        let cx = Context {
            vc_user: user,
            ..Context::default()
        };
        transport
            .call(login_request(&content.session_manager, user, password), cx)
            .await?;
        tracing::debug!(user, "logged in to vCenter");
        let session = Self {
            transport,
            content,
            negotiation,
            user: user.to_string(),
            relogin: None,
            limit: None,
        };
        if let Err(e) = compat::check_license(&session.transport, &session.content).await {
            session.logout().await;
            return Err(e);
        }
        Ok(session)
    }

    /// One SOAP call that survives vCenter going away: transport failures are retried
    /// with exponential backoff (250 ms doubling to 5 s) until the reconnect budget is
    /// spent, non-idempotent calls only when the request never left; a session vCenter
    /// no longer knows (it restarted) is replaced by a new login, once per call.
    pub async fn call(&self, req: Request, cx: Context<'_>) -> Result<Element, VcError> {
        let Some(relogin) = &self.relogin else {
            let _slot = self.permit().await;
            return self.transport.call(req, cx).await;
        };
        let method = req.method();
        let deadline = Instant::now() + relogin.reconnect.budget;
        let mut backoff = FIRST_BACKOFF;
        let mut logged_in_again = false;
        let mut warned = false;
        loop {
            let seen = *relogin.logins.lock().await;
            let slot = self.permit().await;
            let sent = self.transport.call(req.clone(), cx).await;
            drop(slot);
            let err = match sent {
                Ok(reply) => {
                    if warned {
                        tracing::warn!(method, "vCenter is reachable again");
                    }
                    return Ok(reply);
                }
                Err(e) => e,
            };
            match err {
                VcError::NotAuthenticated { .. } if !logged_in_again => {
                    logged_in_again = true;
                    self.login_again(relogin, seen, deadline).await?;
                }
                e if e.retryable(idempotent(method)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(e);
                    }
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            method,
                            error = %e,
                            budget_s = relogin.reconnect.budget.as_secs(),
                            "vCenter unreachable: retrying with backoff"
                        );
                    }
                    tokio::time::sleep(backoff.min(left)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                e => return Err(e),
            }
        }
    }

    /// Log in again on the same transport (new session cookie), unless another task
    /// already did since `seen`. Retries while vCenter is unreachable, until `deadline`.
    async fn login_again(
        &self,
        relogin: &Relogin,
        seen: u64,
        deadline: Instant,
    ) -> Result<(), VcError> {
        let mut logins = relogin.logins.lock().await;
        if *logins != seen {
            return Ok(());
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            let req = login_request(
                &self.content.session_manager,
                &self.user,
                relogin.password.expose(),
            );
            let cx = Context {
                vc_user: &self.user,
                ..Context::default()
            };
            let slot = self.permit().await;
            let sent = self.transport.call(req, cx).await;
            drop(slot);
            match sent {
                Ok(_) => {
                    *logins += 1;
                    tracing::warn!(user = %self.user, "vCenter had dropped the session: logged in again");
                    return Ok(());
                }
                Err(e) if e.retryable(false) && Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// End the session; failures are logged, not returned (the session expires anyway).
    pub async fn logout(&self) {
        let req = Request::new("Logout", &self.content.session_manager);
        // Not through `call`: a logout is not worth waiting for vCenter to come back.
        if let Err(e) = self.transport.call(req, Context::default()).await {
            tracing::debug!(error = %e, "logout failed");
        }
    }

    /// The transport, carrying the session cookie.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The server's ServiceContent.
    pub fn content(&self) -> &ServiceContent {
        &self.content
    }

    /// The version spoken and how it was chosen.
    pub fn negotiation(&self) -> &Negotiation {
        &self.negotiation
    }

    /// The report's `vcenter` section: the endpoint, the negotiated version, `about`.
    pub fn report(&self) -> ServerReport {
        ServerReport {
            url: self.transport.sdk().to_string(),
            negotiated: self.negotiation.clone(),
            about: self.content.about.clone(),
        }
    }

    /// The vCenter user name.
    pub fn user(&self) -> &str {
        &self.user
    }
}
