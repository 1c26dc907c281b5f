//! The ServiceContent, decoded: where the server's managers are and what it says it is
//! (`about`). Pure functions, no I/O: the session reads it once at login, compat judges the
//! server by it, transfer asks whether the server is a vCenter.

use serde::Serialize;

use super::soap::{MoRef, returnval};
use super::xml::Element;

/// `apiType` of a vCenter.
pub const VIRTUAL_CENTER: &str = "VirtualCenter";
/// `apiType` of an ESXi host.
pub const HOST_AGENT: &str = "HostAgent";

/// The server's `ServiceContent.about` (AboutInfo), the fields worth reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct About {
    /// Product name, e.g. `VMware vCenter Server`.
    pub name: String,
    /// Product name with version and build.
    pub full_name: String,
    /// Product version, e.g. `8.0.3`.
    pub version: String,
    /// Build number.
    pub build: String,
    /// `VirtualCenter` or `HostAgent`.
    pub api_type: String,
    /// The newest API version the server implements, as it says.
    pub api_version: String,
}

impl About {
    /// Read an `<about>` element; missing fields are empty.
    pub fn from_element(about: Option<&Element>) -> Self {
        let text = |name: &str| {
            about
                .and_then(|a| a.child_text(name))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        };
        Self {
            name: text("name"),
            full_name: text("fullName"),
            version: text("version"),
            build: text("build"),
            api_type: text("apiType"),
            api_version: text("apiVersion"),
        }
    }

    /// The server as a message names it: `VMware vCenter Server 8.0.3 build-24022515 (API 8.0.2.0)`.
    pub fn describe(&self) -> String {
        let product = if self.full_name.is_empty() {
            "a server that does not say what it is".to_string()
        } else {
            self.full_name.clone()
        };
        if self.api_version.is_empty() {
            product
        } else {
            format!("{product} (API {})", self.api_version)
        }
    }
}

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
    /// The LicenseManager (read on standalone ESXi hosts).
    pub license_manager: Option<MoRef>,
    /// `about`: what the server says it is.
    pub about: About,
    /// `about.apiVersion` (also in [`ServiceContent::about`]).
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
    let about = About::from_element(rv.child("about"));
    Ok(ServiceContent {
        root_folder: need("rootFolder")?,
        property_collector: need("propertyCollector")?,
        view_manager: opt("viewManager"),
        session_manager: need("sessionManager")?,
        guest_operations_manager: opt("guestOperationsManager"),
        license_manager: license_manager(rv),
        about: about.clone(),
        api_version: about.api_version,
    })
}

/// The reference of the LicenseManager, if the ServiceContent has one.
pub fn license_manager(rv: &Element) -> Option<MoRef> {
    rv.child("licenseManager").and_then(MoRef::from_element)
}
