//! What kind of server the simulator plays: its product and `about`, the version document it
//! publishes at `/sdk/vimServiceVersions.xml` (or none), and whether /guestFile transfers go
//! through an "ESXi host" of their own, as they do through a real vCenter.

use std::net::SocketAddr;

/// The product the simulator claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Product {
    /// vCenter 8.0.3: publishes an internal id as its current version and 8.0.2.0 first
    /// among its prior versions, as recorded from a real one.
    #[default]
    #[value(name = "vcenter-8.0.3")]
    Vcenter803,
    /// vCenter 6.7: a plain `6.7` as its current version.
    #[value(name = "vcenter-6.7")]
    Vcenter67,
    /// vCenter 4.1: too old for guest operations (no GuestOperationsManager).
    #[value(name = "vcenter-4.1")]
    Vcenter41,
    /// A standalone ESXi 8.0.3 host (`apiType` HostAgent); transfer URLs name `*`.
    #[value(name = "esxi-8.0.3")]
    Esxi803,
}

/// `about` fields of a product.
#[derive(Debug, Clone, Copy)]
pub struct About {
    /// name.
    pub name: &'static str,
    /// fullName.
    pub full_name: &'static str,
    /// version.
    pub version: &'static str,
    /// build.
    pub build: &'static str,
    /// productLineId.
    pub product_line: &'static str,
    /// apiType.
    pub api_type: &'static str,
    /// apiVersion.
    pub api_version: &'static str,
}

/// The vimServiceVersions.xml vCenter 8.0.3 build-69507950 served to pyvmomi, byte for byte
/// (pyvmomi tests/fixtures/smart_connection.yaml, interaction 0; see
/// reset-controller/fixtures/pyvmomi/README.md).
const VERSIONS_VC803: &str = r#"<?xml version="1.0" encoding="UTF-8" ?><namespaces version="1.0"><namespace><name>urn:vim25</name><version>uA046D008</version><priorVersions><version>8.0.2.0</version><version>8.0.1.0</version><version>8.0.0.2</version><version>8.0.0.1</version><version>8.0.0.0</version><version>7.0.3.2</version><version>7.0.3.1</version><version>7.0.3.0</version><version>7.0.2.1</version><version>7.0.2.0</version><version>7.0.1.1</version><version>7.0.1.0</version><version>7.0.0.2</version><version>7.0.0.0</version><version>6.9.1</version><version>6.8.7</version><version>6.7.3</version><version>6.7.2</version><version>6.7.1</version><version>6.7</version><version>6.5</version><version>6.0</version><version>5.5</version><version>5.1</version><version>5.0</version><version>4.1</version><version>4.0</version></priorVersions></namespace></namespaces>
"#;

/// The shape vCenters before 7 publish: a plain current version, pre-5.0 names among the
/// prior versions, and the old `urn:vim2` namespace beside `urn:vim25`.
fn versions_plain(current: &str, prior: &[&str]) -> String {
    let prior: String = prior
        .iter()
        .map(|v| format!("   <version>{v}</version>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<namespaces version=\"1.0\">\n <namespace>\n  <name>urn:vim25</name>\n  <version>{current}</version>\n  <priorVersions>\n{prior}  </priorVersions>\n </namespace>\n <namespace>\n  <name>urn:vim2</name>\n  <version>2.0</version>\n </namespace>\n</namespaces>\n"
    )
}

impl Product {
    /// Its `about`.
    pub fn about(self) -> About {
        match self {
            Self::Vcenter803 => About {
                name: "VMware vCenter Server",
                full_name: "VMware vCenter Server 8.0.3 build-69507950 (reset-peer vcsim)",
                version: "8.0.3",
                build: "69507950",
                product_line: "vpx",
                api_type: "VirtualCenter",
                api_version: "8.0.2.0",
            },
            Self::Vcenter67 => About {
                name: "VMware vCenter Server",
                full_name: "VMware vCenter Server 6.7.0 build-8217866 (reset-peer vcsim)",
                version: "6.7.0",
                build: "8217866",
                product_line: "vpx",
                api_type: "VirtualCenter",
                api_version: "6.7",
            },
            Self::Vcenter41 => About {
                name: "VMware vCenter Server",
                full_name: "VMware vCenter Server 4.1.0 build-258902 (reset-peer vcsim)",
                version: "4.1.0",
                build: "258902",
                product_line: "vpx",
                api_type: "VirtualCenter",
                api_version: "4.1",
            },
            Self::Esxi803 => About {
                name: "VMware ESXi",
                full_name: "VMware ESXi 8.0.3 build-69507956 (reset-peer vcsim)",
                version: "8.0.3",
                build: "69507956",
                product_line: "embeddedEsx",
                api_type: "HostAgent",
                api_version: "8.0.2.0",
            },
        }
    }

    /// Its /sdk/vimServiceVersions.xml.
    pub fn versions_doc(self) -> String {
        match self {
            Self::Vcenter803 | Self::Esxi803 => VERSIONS_VC803.to_string(),
            Self::Vcenter67 => versions_plain(
                "6.7",
                &[
                    "6.5",
                    "6.0",
                    "5.5",
                    "5.1",
                    "5.0",
                    "4.1",
                    "4.0",
                    "2.5u2server",
                    "2.5u2",
                    "2.5",
                ],
            ),
            Self::Vcenter41 => versions_plain("4.1", &["4.0", "2.5u2server", "2.5u2", "2.5"]),
        }
    }

    /// Whether it has guest operations (vSphere API 5.0 and later).
    pub fn guest_operations(self) -> bool {
        self != Self::Vcenter41
    }

    /// Whether it is a standalone ESXi host.
    pub fn is_esxi(self) -> bool {
        self == Self::Esxi803
    }

    /// The HostSystem its VMs run on.
    pub fn host_id(self) -> &'static str {
        if self.is_esxi() { "ha-host" } else { "host-1" }
    }

    /// Its LicenseManager.
    pub fn license_manager(self) -> &'static str {
        if self.is_esxi() {
            "ha-license-manager"
        } else {
            "LicenseManager"
        }
    }
}

/// The "ESXi host" /guestFile transfers go to, as through a real vCenter: a name that does
/// not resolve, a second listener with its own self-signed certificate, and the HostSystem
/// properties that lead there.
#[derive(Debug, Clone)]
pub struct EsxHost {
    /// HostSystem.name, what transfer URLs name (`esx-01.vcsim.invalid`).
    pub name: String,
    /// The second listener: its IP is the host's management IP.
    pub addr: SocketAddr,
    /// summary.config.sslThumbprint as published (SHA-1, `AA:BB:...`).
    pub thumbprint: String,
}

/// The host name transfer URLs name in "ESXi host" mode: `.invalid` never resolves.
pub const ESX_HOST_NAME: &str = "esx-01.vcsim.invalid";

/// How the simulator presents itself.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// The product and its version document.
    pub product: Product,
    /// Answer 404 at /sdk/vimServiceVersions.xml.
    pub no_versions_doc: bool,
    /// On an ESXi product, LicenseManager.licenses' editionKey (`eval`, `esxBasic`, ...).
    pub esxi_license: String,
    /// Transfers go through this "ESXi host" instead of `*`.
    pub esx_host: Option<EsxHost>,
    /// Objects per RetrievePropertiesEx page (0: [`DEFAULT_PAGE_SIZE`]).
    pub page_size: usize,
}

/// Objects per RetrievePropertiesEx page unless set.
pub const DEFAULT_PAGE_SIZE: usize = 100;

impl Profile {
    /// Objects per RetrievePropertiesEx page.
    pub fn page_size(&self) -> usize {
        if self.page_size == 0 {
            DEFAULT_PAGE_SIZE
        } else {
            self.page_size
        }
    }

    /// The license edition of an ESXi product (`eval` unless set).
    pub fn esxi_edition(&self) -> &str {
        if self.esxi_license.is_empty() {
            "eval"
        } else {
            &self.esxi_license
        }
    }
}
