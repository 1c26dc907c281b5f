//! The inventory and the PropertyCollector: ServiceContent, VM properties,
//! container views, RetrieveProperties(Ex) and Fetch (pyvmomi's accessor).

use crate::model::Sim;
use crate::soap::{Fault, faults, leaf, moref};
use crate::xml::{Node, esc};

/// The root folder id.
pub const ROOT_FOLDER: &str = "group-d1";

/// A property value: `xsi:type`, extra attributes, inner XML.
#[derive(Debug, Clone)]
pub struct Val {
    /// xsi:type.
    pub xsi: String,
    /// Extra attributes (e.g. ` type="GuestFileManager"`).
    pub attrs: String,
    /// Inner XML.
    pub inner: String,
}

impl Val {
    /// An `xsd:string`.
    pub fn string(s: &str) -> Self {
        Self {
            xsi: "xsd:string".into(),
            attrs: String::new(),
            inner: esc(s),
        }
    }

    /// A value of type `xsi` with this inner XML.
    pub fn typed(xsi: &str, inner: String) -> Self {
        Self {
            xsi: xsi.into(),
            attrs: String::new(),
            inner,
        }
    }

    /// A ManagedObjectReference.
    pub fn moref(kind: &str, v: &str) -> Self {
        Self {
            xsi: "ManagedObjectReference".into(),
            attrs: format!(r#" type="{kind}""#),
            inner: esc(v),
        }
    }

    /// Encode as `<tag xsi:type=...>`.
    pub fn encode(&self, tag: &str) -> String {
        format!(
            r#"<{tag}{} xsi:type="{}">{}</{tag}>"#,
            self.attrs, self.xsi, self.inner
        )
    }
}

/// RetrieveServiceContent's returnval, in ServiceContent's property order.
pub fn service_content(sim: &Sim) -> String {
    let product = sim.profile.product;
    let a = product.about();
    let mut out = vec![
        moref("rootFolder", "Folder", ROOT_FOLDER),
        moref(
            "propertyCollector",
            "PropertyCollector",
            "propertyCollector",
        ),
        moref("viewManager", "ViewManager", "ViewManager"),
        format!(
            "<about>{}{}{}{}{}{}{}{}{}{}{}</about>",
            leaf("name", a.name),
            leaf("fullName", a.full_name),
            leaf("vendor", "VMware, Inc."),
            leaf("version", a.version),
            leaf("build", a.build),
            leaf("localeVersion", "INTL"),
            leaf("localeBuild", "000"),
            leaf("osType", "linux-x64"),
            leaf("productLineId", a.product_line),
            leaf("apiType", a.api_type),
            leaf("apiVersion", a.api_version),
        ),
        moref("sessionManager", "SessionManager", "SessionManager"),
        moref(
            "licenseManager",
            "LicenseManager",
            product.license_manager(),
        ),
    ];
    if product.guest_operations() {
        out.push(moref(
            "guestOperationsManager",
            "GuestOperationsManager",
            "guestOperationsManager",
        ));
    }
    out.concat()
}

/// A property of a managed object, or `None` if unknown.
pub fn property(sim: &Sim, kind: &str, id: &str, path: &str) -> Option<Val> {
    match kind {
        "VirtualMachine" => {
            let vm = &sim.cfg.vms[sim.vm_index(id)?];
            let power = if vm.powered_on {
                "poweredOn"
            } else {
                "poweredOff"
            };
            let tools = if vm.tools_running {
                "guestToolsRunning"
            } else {
                "guestToolsNotRunning"
            };
            Some(match path {
                "name" | "config.name" => Val::string(&vm.name),
                "runtime.powerState" => Val::typed("VirtualMachinePowerState", power.into()),
                "guest.toolsRunningStatus" => Val::string(tools),
                "runtime.host" => Val::moref("HostSystem", sim.profile.product.host_id()),
                "runtime" => Val::typed(
                    "VirtualMachineRuntimeInfo",
                    format!(
                        "{}{}{}",
                        moref("host", "HostSystem", sim.profile.product.host_id()),
                        leaf("connectionState", "connected"),
                        leaf("powerState", power)
                    ),
                ),
                "guest" => Val::typed(
                    "GuestInfo",
                    format!(
                        "{}{}{}{}",
                        leaf(
                            "toolsStatus",
                            if vm.tools_running {
                                "toolsOk"
                            } else {
                                "toolsNotRunning"
                            }
                        ),
                        leaf("toolsRunningStatus", tools),
                        leaf(
                            "guestState",
                            if vm.tools_running {
                                "running"
                            } else {
                                "notRunning"
                            }
                        ),
                        leaf(
                            "guestOperationsReady",
                            if vm.tools_running { "true" } else { "false" }
                        ),
                    ),
                ),
                _ => return None,
            })
        }
        "ContainerView" if path == "view" && sim.has_view(id) => {
            let items: String = (1..=sim.cfg.vms.len())
                .map(|i| format!(r#"<ManagedObjectReference type="VirtualMachine" xsi:type="ManagedObjectReference">vm-{i}</ManagedObjectReference>"#))
                .collect();
            Some(Val::typed("ArrayOfManagedObjectReference", items))
        }
        "GuestOperationsManager" => match path {
            "authManager" => Some(Val::moref("GuestAuthManager", "guestOperationsAuthManager")),
            "fileManager" => Some(Val::moref("GuestFileManager", "guestOperationsFileManager")),
            "processManager" => Some(Val::moref(
                "GuestProcessManager",
                "guestOperationsProcessManager",
            )),
            _ => None,
        },
        "HostSystem" | "LicenseManager" => crate::host::property(sim, kind, id, path),
        _ => None,
    }
}

fn all_paths(kind: &str) -> &'static [&'static str] {
    match kind {
        "VirtualMachine" => &["name", "runtime", "guest"],
        "ContainerView" => &["view"],
        "GuestOperationsManager" => &["authManager", "fileManager", "processManager"],
        _ => &[],
    }
}

fn invalid_property(path: &str) -> Fault {
    Fault::new(
        "InvalidProperty",
        format!("Property {path} is not supported by this simulator"),
    )
    .with(leaf("name", path))
}

/// Objects selected by one objectSet: the object, or through a ContainerView.
fn select(sim: &Sim, os: &Node) -> Result<Vec<(String, String)>, Fault> {
    let obj = os
        .child("obj")
        .ok_or_else(|| faults::invalid_argument("obj"))?;
    let kind = obj.attr("type").unwrap_or("").to_string();
    let id = obj.text.trim().to_string();
    let skip = os.text_of("skip") == Some("true");
    let mut out = Vec::new();
    if !skip {
        out.push((kind.clone(), id.clone()));
    }
    for sel in os.all("selectSet") {
        if kind == "ContainerView" && sel.text_of("path") == Some("view") {
            if !sim.has_view(&id) {
                return Err(faults::managed_object_not_found(&kind, &id));
            }
            out.extend(
                (1..=sim.cfg.vms.len()).map(|i| ("VirtualMachine".to_string(), format!("vm-{i}"))),
            );
        }
    }
    Ok(out)
}

/// The `objects`/`returnval` elements for a RetrieveProperties(Ex) request, one per object.
pub fn retrieve(sim: &Sim, req: &Node, tag: &str) -> Result<Vec<String>, Fault> {
    let mut out = Vec::new();
    for spec in req.all("specSet") {
        for os in spec.all("objectSet") {
            for (kind, id) in select(sim, os)? {
                let Some(ps) = spec
                    .all("propSet")
                    .find(|p| p.text_of("type") == Some(kind.as_str()))
                else {
                    continue;
                };
                let mut paths: Vec<String> = ps
                    .all("pathSet")
                    .map(|p| p.text.trim().to_string())
                    .collect();
                if ps.text_of("all") == Some("true") {
                    paths.extend(all_paths(&kind).iter().map(|s| s.to_string()));
                }
                let mut props = String::new();
                for p in &paths {
                    let v = property(sim, &kind, &id, p).ok_or_else(|| invalid_property(p))?;
                    props.push_str(&format!(
                        "<propSet>{}{}</propSet>",
                        leaf("name", p),
                        v.encode("val")
                    ));
                }
                out.push(format!(
                    "<{tag}>{}{props}</{tag}>",
                    moref("obj", &kind, &id)
                ));
            }
        }
    }
    Ok(out)
}

/// Fetch(_this, prop): one property as `returnval`.
pub fn fetch(sim: &Sim, kind: &str, id: &str, req: &Node) -> Result<String, Fault> {
    let prop = req
        .text_of("prop")
        .ok_or_else(|| faults::invalid_argument("prop"))?;
    let v = property(sim, kind, id, prop).ok_or_else(|| invalid_property(prop))?;
    Ok(v.encode("returnval"))
}
