//! Whether the server at GOVC_URL can run the fault, decided before any guest operation.
//!
//! Refused, each with a message naming the fix:
//! - a server too old for guest operations: every release its version document lists, or its
//!   `about.apiVersion`, is older than vSphere API 5.0, or it publishes no
//!   GuestOperationsManager;
//! - an ESXi-only server: a standalone ESXi host (`apiType` HostAgent) under the free vSphere
//!   Hypervisor license, whose API is read-only (every guest operation would fail with
//!   RestrictedVersion). A licensed standalone ESXi host is accepted: guest operations and
//!   /guestFile transfers work against it directly, as with pyvmomi and govc.
//!
//! Also what the report records about the server: the negotiated version and `about`.

use serde::Serialize;

use super::client::Transport;
use super::collector::{parse_retrieve, retrieve_request};
use super::error::{Context, VcError};
use super::service::{About, HOST_AGENT, ServiceContent};
use super::versions::{MIN_VERSION, Negotiation, older_than_min};
use super::xml::Element;

/// The report's `vcenter` section: the server and the version spoken with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerReport {
    /// The SDK endpoint called.
    pub url: String,
    /// The version negotiated.
    pub negotiated: Negotiation,
    /// What the server says it is.
    pub about: About,
}

fn unsupported(url: &str, about: &About, reason: String) -> VcError {
    VcError::Unsupported {
        server: format!("{} at {url}", about.describe()),
        reason,
    }
}

/// The checks that need only the ServiceContent: API version and guest operations.
pub fn check_service(url: &str, sc: &ServiceContent) -> Result<(), VcError> {
    let about = &sc.about;
    if older_than_min(&about.api_version) {
        return Err(unsupported(
            url,
            about,
            format!(
                "guest operations need vSphere API {MIN_VERSION} or newer: upgrade the server, or point GOVC_URL at a newer vCenter that manages these VMs"
            ),
        ));
    }
    if sc.guest_operations_manager.is_none() {
        return Err(unsupported(
            url,
            about,
            format!(
                "it publishes no GuestOperationsManager, so it cannot run programs in guests (guest operations need vSphere API {MIN_VERSION} or newer): point GOVC_URL at a vCenter or ESXi host that has them"
            ),
        ));
    }
    Ok(())
}

/// A license edition of the free vSphere Hypervisor (API read-only): `esxBasic` as ESXi
/// reports it (VMware's own scripts test for this key), and the hypervisor-only editions of
/// newer releases.
pub fn free_edition(edition_key: &str, name: &str) -> bool {
    let key = edition_key.to_ascii_lowercase();
    key == "esxbasic"
        || key.starts_with("esx.hypervisor")
        || key == "esx.free"
        || (key.is_empty() && name.contains("Hypervisor"))
}

/// An ESXi host's license editions: `(editionKey, name)` of LicenseManager.licenses.
pub fn parse_licenses(reply: &Element) -> Vec<(String, String)> {
    let (objects, _) = parse_retrieve(reply);
    objects
        .iter()
        .filter_map(|o| o.props.get("licenses"))
        .flat_map(|v| v.children.iter())
        .map(|l| {
            let text = |n: &str| l.child_text(n).unwrap_or("").trim().to_string();
            (text("editionKey"), text("name"))
        })
        .collect()
}

/// On a standalone ESXi host, refuse the free vSphere Hypervisor license (read-only API).
/// Needs a logged-in transport; vCenters are not asked (their licenses do not restrict the
/// API). A host whose licenses cannot be read is let through: RestrictedVersion faults are
/// still turned into a clear message.
pub async fn check_license(transport: &Transport, sc: &ServiceContent) -> Result<(), VcError> {
    if sc.about.api_type != HOST_AGENT {
        return Ok(());
    }
    let Some(lm) = &sc.license_manager else {
        return Ok(());
    };
    let req = retrieve_request(
        &sc.property_collector,
        lm,
        "LicenseManager",
        &["licenses"],
        false,
    );
    let reply = match transport.call(req, Context::default()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the ESXi host's licenses");
            return Ok(());
        }
    };
    let licenses = parse_licenses(&reply);
    tracing::debug!(?licenses, "ESXi host licenses");
    match licenses.iter().find(|(key, name)| free_edition(key, name)) {
        Some((key, name)) => Err(unsupported(
            transport.sdk().as_str(),
            &sc.about,
            format!(
                "it is a standalone ESXi host under the free vSphere Hypervisor license ({name}, edition {key}), whose API is read-only: every guest operation would fail with RestrictedVersion; point GOVC_URL at the vCenter that manages this host, or assign the host a vSphere license"
            ),
        )),
        None => Ok(()),
    }
}
