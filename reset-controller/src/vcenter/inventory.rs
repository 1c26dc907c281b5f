//! Inventory lookups: a ContainerView over the root folder plus RetrievePropertiesEx
//! finds VMs by name (0 or >1 matches is an error) and reads their power and Tools
//! state; the same collector reads the GuestOperationsManager's sub-managers.

use std::collections::BTreeMap;

use super::collector::{
    ObjectContent, create_container_view_request, parse_retrieve, retrieve_request,
};
use super::error::{Context, VcError};
use super::session::Session;
use super::soap::{MoRef, Request, returnval};

/// Pages of RetrievePropertiesEx followed at most (1000 objects each by default).
const MAX_PAGES: usize = 1000;

const VM_PROPS: [&str; 3] = ["name", "runtime.powerState", "guest.toolsRunningStatus"];

/// A VM found by name, with the state guest operations depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// Its name.
    pub name: String,
    /// Its managed object reference.
    pub moref: MoRef,
    /// `runtime.powerState`: poweredOn, poweredOff, suspended.
    pub power_state: String,
    /// `guest.toolsRunningStatus`: guestToolsRunning, guestToolsNotRunning, ...
    pub tools_running_status: String,
}

impl VmInfo {
    /// Fail unless the VM is powered on and Tools is running.
    pub fn check_ready(&self) -> Result<(), VcError> {
        if self.power_state != "poweredOn" {
            return Err(VcError::InvalidPowerState {
                vm: self.name.clone(),
                state: self.power_state.clone(),
            });
        }
        if self.tools_running_status != "guestToolsRunning" {
            return Err(VcError::ToolsNotRunning {
                vm: self.name.clone(),
                status: if self.tools_running_status.is_empty() {
                    "unset".into()
                } else {
                    self.tools_running_status.clone()
                },
            });
        }
        Ok(())
    }
}

/// The GuestOperationsManager's sub-managers; `None` where the server has none
/// (guest calls needing it then fail with GuestOperationsUnavailable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestManagers {
    /// GuestAuthManager (ValidateCredentialsInGuest).
    pub auth: Option<MoRef>,
    /// GuestFileManager.
    pub file: Option<MoRef>,
    /// GuestProcessManager.
    pub process: Option<MoRef>,
}

/// Pick the VMs named in `names` out of collected objects: one result per name.
pub fn match_vms(
    objects: &[ObjectContent],
    names: &[String],
) -> BTreeMap<String, Result<VmInfo, VcError>> {
    let text = |o: &ObjectContent, p: &str| {
        o.props
            .get(p)
            .map(|e| e.text.trim().to_string())
            .unwrap_or_default()
    };
    names
        .iter()
        .map(|name| {
            let hits: Vec<&ObjectContent> = objects
                .iter()
                .filter(|o| text(o, "name") == *name)
                .collect();
            let r = match hits.as_slice() {
                [] => Err(VcError::VmNotFound { name: name.clone() }),
                [o] => Ok(VmInfo {
                    name: name.clone(),
                    moref: o.obj.clone(),
                    power_state: text(o, "runtime.powerState"),
                    tools_running_status: text(o, "guest.toolsRunningStatus"),
                }),
                many => Err(VcError::VmAmbiguous {
                    name: name.clone(),
                    count: many.len(),
                    ids: many
                        .iter()
                        .map(|o| o.obj.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            };
            (name.clone(), r)
        })
        .collect()
}

async fn retrieve_all(s: &Session, first: Request) -> Result<Vec<ObjectContent>, VcError> {
    let t = s.transport();
    let pc = &s.content().property_collector;
    let mut reply = t.call(first, Context::default()).await?;
    let mut all = Vec::new();
    for _ in 0..MAX_PAGES {
        let (mut objs, token) = parse_retrieve(&reply);
        all.append(&mut objs);
        let Some(token) = token else { return Ok(all) };
        let req = Request::new("ContinueRetrievePropertiesEx", pc).text("token", &token);
        reply = t.call(req, Context::default()).await?;
    }
    Err(VcError::TooLarge {
        what: format!("RetrievePropertiesEx ({MAX_PAGES} pages)"),
        limit: MAX_PAGES,
    })
}

/// Find each named VM (exactly one match per name) with its power and Tools state.
pub async fn find_vms(
    s: &Session,
    names: &[String],
) -> Result<BTreeMap<String, Result<VmInfo, VcError>>, VcError> {
    let sc = s.content();
    let vmgr = sc.view_manager.as_ref().ok_or_else(|| VcError::Protocol {
        method: "CreateContainerView".into(),
        reason: "the server has no ViewManager".into(),
    })?;
    let t = s.transport();
    let reply = t
        .call(
            create_container_view_request(vmgr, &sc.root_folder, "VirtualMachine"),
            Context::default(),
        )
        .await?;
    let view = returnval(&reply)
        .ok()
        .and_then(MoRef::from_element)
        .ok_or_else(|| VcError::Protocol {
            method: "CreateContainerView".into(),
            reason: "no view reference in the reply".into(),
        })?;
    let objects = retrieve_all(
        s,
        retrieve_request(
            &sc.property_collector,
            &view,
            "VirtualMachine",
            &VM_PROPS,
            true,
        ),
    )
    .await;
    if let Err(e) = t
        .call(Request::new("DestroyView", &view), Context::default())
        .await
    {
        tracing::debug!(error = %e, "DestroyView failed");
    }
    Ok(match_vms(&objects?, names))
}

/// Read the GuestOperationsManager's auth, file and process managers.
pub async fn guest_managers(s: &Session) -> Result<GuestManagers, VcError> {
    let sc = s.content();
    let Some(gom) = sc.guest_operations_manager.as_ref() else {
        return Ok(GuestManagers::default());
    };
    let req = retrieve_request(
        &sc.property_collector,
        gom,
        "GuestOperationsManager",
        &["authManager", "fileManager", "processManager"],
        false,
    );
    let objects = retrieve_all(s, req).await?;
    let get = |p: &str| {
        objects
            .first()
            .and_then(|o| o.props.get(p))
            .and_then(MoRef::from_element)
    };
    Ok(GuestManagers {
        auth: get("authManager"),
        file: get("fileManager"),
        process: get("processManager"),
    })
}
