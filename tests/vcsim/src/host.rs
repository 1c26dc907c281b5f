//! The HostSystem the VMs run on and the LicenseManager, with the properties a client reads
//! to reach the host for /guestFile transfers (name, management IP, certificate thumbprint)
//! and to tell a free-license ESXi host. Shapes as recorded by pyvmomi from vCenter 8.0.3
//! (reset-controller/fixtures/pyvmomi).

use crate::model::Sim;
use crate::objects::Val;
use crate::soap::{leaf, moref};

/// The vmknic the management IP is on.
const MGMT_KEY: &str = "management.key-vim.host.VirtualNic-vmk0";
/// A second vmknic, for vMotion: listed, never selected for management.
const VMOTION_KEY: &str = "vmotion.key-vim.host.VirtualNic-vmk1";

fn candidate(device: &str, key: &str, portgroup: &str, ip: &str) -> String {
    format!(
        "<candidateVnic>{}{}{}<spec><ip>{}{}{}</ip>{}{}{}</spec></candidateVnic>",
        leaf("device", device),
        leaf("key", key),
        leaf("portgroup", portgroup),
        leaf("dhcp", "false"),
        leaf("ipAddress", ip),
        leaf("subnetMask", "255.255.255.0"),
        leaf("mac", "00:50:56:00:00:01"),
        leaf("portgroup", portgroup),
        leaf("mtu", "1500"),
    )
}

/// The host's VirtualNicManagerNetConfig bodies: a vmotion config (another IP, to be ignored)
/// and the management config whose selected vmknic has `mgmt_ip`.
fn net_configs(mgmt_ip: &str) -> [String; 2] {
    let config = |nic_type: &str, vnics: String, selected: &str| {
        format!(
            "{}{}{vnics}{}",
            leaf("nicType", nic_type),
            leaf("multiSelectAllowed", "true"),
            leaf("selectedVnic", selected),
        )
    };
    [
        config(
            "vmotion",
            candidate("vmk1", VMOTION_KEY, "vMotion", "198.18.200.11"),
            VMOTION_KEY,
        ),
        config(
            "management",
            candidate("vmk0", MGMT_KEY, "Management Network", mgmt_ip)
                + &candidate(
                    "vmk1",
                    "management.key-vim.host.VirtualNic-vmk1",
                    "vMotion",
                    "198.18.200.11",
                ),
            MGMT_KEY,
        ),
    ]
}

/// config.virtualNicManagerInfo.netConfig, as an array property.
fn net_config(mgmt_ip: &str) -> Val {
    let items: String = net_configs(mgmt_ip)
        .iter()
        .map(|c| {
            format!(
                r#"<VirtualNicManagerNetConfig xsi:type="VirtualNicManagerNetConfig">{c}</VirtualNicManagerNetConfig>"#
            )
        })
        .collect();
    Val::typed("ArrayOfVirtualNicManagerNetConfig", items)
}

/// `product` (AboutInfo) of the ESXi host.
fn product() -> String {
    format!(
        "<product>{}{}{}{}{}{}{}{}</product>",
        leaf("name", "VMware ESXi"),
        leaf("fullName", "VMware ESXi 8.0.3 build-69507956"),
        leaf("vendor", "VMware, Inc."),
        leaf("version", "8.0.3"),
        leaf("build", "69507956"),
        leaf("osType", "vmnix-x86"),
        leaf("apiType", "HostAgent"),
        leaf("apiVersion", "8.0.2.0"),
    )
}

/// The whole `config` (HostConfigInfo) and `summary` (HostListSummary), for clients that read
/// them as accessors (pyvmomi's `host.config`, `host.summary`).
fn whole(id: &str, path: &str, esx: &crate::profile::EsxHost) -> Option<Val> {
    let me = moref("host", "HostSystem", id);
    Some(match path {
        "config" => Val::typed(
            "HostConfigInfo",
            format!(
                "{me}{}<virtualNicManagerInfo>{}</virtualNicManagerInfo>",
                product(),
                net_configs(&esx.addr.ip().to_string())
                    .iter()
                    .map(|c| format!("<netConfig>{c}</netConfig>"))
                    .collect::<String>()
            ),
        ),
        "summary" => Val::typed(
            "HostListSummary",
            format!(
                "{me}<config>{}{}{}{}{}{}</config>{}",
                leaf("name", &esx.name),
                leaf("port", "443"),
                leaf("sslThumbprint", &esx.thumbprint),
                product(),
                leaf("vmotionEnabled", "true"),
                leaf("faultToleranceEnabled", "false"),
                leaf("overallStatus", "green"),
            ),
        ),
        _ => return None,
    })
}

fn licenses(sim: &Sim) -> Val {
    let (key, name) = if sim.profile.product.is_esxi() {
        let key = sim.profile.esxi_edition();
        let name = match key {
            "eval" => "Evaluation Mode",
            "esxBasic" => "VMware vSphere 8 Hypervisor",
            _ => "VMware vSphere 8 Enterprise Plus",
        };
        (key.to_string(), name)
    } else {
        (
            "vc.standard.instance".to_string(),
            "VMware vCenter Server 8 Standard",
        )
    };
    Val::typed(
        "ArrayOfLicenseManagerLicenseInfo",
        format!(
            r#"<LicenseManagerLicenseInfo xsi:type="LicenseManagerLicenseInfo">{}{}{}{}{}{}</LicenseManagerLicenseInfo>"#,
            leaf("licenseKey", "00000-00000-00000-00000-00000"),
            leaf("editionKey", &key),
            leaf("name", name),
            leaf("total", "0"),
            leaf("used", "2"),
            leaf("costUnit", "cpuPackage"),
        ),
    )
}

/// A property of the HostSystem or the LicenseManager, or `None` if unknown.
pub fn property(sim: &Sim, kind: &str, id: &str, path: &str) -> Option<Val> {
    let product = sim.profile.product;
    match kind {
        "LicenseManager" if id == product.license_manager() && path == "licenses" => {
            Some(licenses(sim))
        }
        "HostSystem" if id == product.host_id() => {
            let esx = sim.profile.esx_host.as_ref();
            match path {
                "name" => Some(Val::string(
                    esx.map_or("localhost.localdomain", |h| h.name.as_str()),
                )),
                "runtime.connectionState" => {
                    Some(Val::typed("HostSystemConnectionState", "connected".into()))
                }
                "summary.config.sslThumbprint" => esx.map(|h| Val::string(&h.thumbprint)),
                "config.virtualNicManagerInfo.netConfig" => {
                    esx.map(|h| net_config(&h.addr.ip().to_string()))
                }
                "config" | "summary" => esx.and_then(|h| whole(id, path, h)),
                _ => None,
            }
        }
        _ => None,
    }
}
