//! Session lifecycle: RetrieveServiceContent, Login (the reply's
//! `vmware_soap_session` cookie is kept by the transport), Logout.

use super::client::{ConnectOptions, Transport};
use super::error::{Context, VcError};
use super::soap::{MoRef, Request, returnval};
use super::xml::Element;

/// The parts of the ServiceContent this client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceContent {
    /// The inventory root folder.
    pub root_folder: MoRef,
    /// The PropertyCollector.
    pub property_collector: MoRef,
    /// The ViewManager (absent on very old servers).
    pub view_manager: Option<MoRef>,
    /// The SessionManager.
    pub session_manager: MoRef,
    /// The GuestOperationsManager (absent when guest operations are not supported).
    pub guest_operations_manager: Option<MoRef>,
    /// `about.fullName`, for logs.
    pub full_name: String,
    /// `about.apiVersion`, for logs.
    pub api_version: String,
}

/// Decode a RetrieveServiceContent reply.
pub fn parse_service_content(reply: &Element) -> Result<ServiceContent, String> {
    let rv = returnval(reply).map_err(|e| e.to_string())?;
    let need = |name: &str| {
        rv.child(name)
            .and_then(MoRef::from_element)
            .ok_or_else(|| format!("ServiceContent has no {name}"))
    };
    let opt = |name: &str| rv.child(name).and_then(MoRef::from_element);
    Ok(ServiceContent {
        root_folder: need("rootFolder")?,
        property_collector: need("propertyCollector")?,
        view_manager: opt("viewManager"),
        session_manager: need("sessionManager")?,
        guest_operations_manager: opt("guestOperationsManager"),
        full_name: rv
            .path(&["about", "fullName"])
            .map(|e| e.text.clone())
            .unwrap_or_default(),
        api_version: rv
            .path(&["about", "apiVersion"])
            .map(|e| e.text.clone())
            .unwrap_or_default(),
    })
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
    user: String,
}

impl Session {
    /// Connect, read the ServiceContent and log in.
    pub async fn login(opts: &ConnectOptions, user: &str, password: &str) -> Result<Self, VcError> {
        let mut transport = Transport::new(opts)?;
        let version = transport.negotiate_version().await?;
        tracing::debug!(?version, "API version");
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
        tracing::debug!(server = %content.full_name, api = %content.api_version, "service content");
        let cx = Context {
            vc_user: user,
            ..Context::default()
        };
        transport
            .call(login_request(&content.session_manager, user, password), cx)
            .await?;
        tracing::debug!(user, "logged in to vCenter");
        Ok(Self {
            transport,
            content,
            user: user.to_string(),
        })
    }

    /// End the session; failures are logged, not returned (the session expires anyway).
    pub async fn logout(&self) {
        let req = Request::new("Logout", &self.content.session_manager);
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

    /// The vCenter user name.
    pub fn user(&self) -> &str {
        &self.user
    }
}
