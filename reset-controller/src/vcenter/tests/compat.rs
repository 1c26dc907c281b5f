//! Version negotiation, server checks and ESXi host facts, against documents VMware servers
//! sent (fixtures/pyvmomi, recorded by pyvmomi's test cassettes; see its README).

use super::super::compat;
use super::super::service::About;
use super::super::transfer::{management_ips, parse_host};
use super::super::versions::{self, Choice, ServiceVersions};
use super::super::xml;
use super::*;

const VC803_VERSIONS: &[u8] =
    include_bytes!("../../../fixtures/pyvmomi/vim_service_versions_vc803.xml");

fn speak(doc: &[u8]) -> Choice {
    versions::choose(&versions::parse(doc).unwrap())
}

#[test]
fn vcenter_8_0_3_document_negotiates_8_0_2_0() {
    let doc = versions::parse(VC803_VERSIONS).unwrap();
    assert_eq!(doc.current, "uA046D008");
    assert_eq!(doc.prior.first().map(String::as_str), Some("8.0.2.0"));
    match versions::choose(&doc) {
        Choice::Speak { version, why } => {
            assert_eq!(
                version, "8.0.2.0",
                "pyvmomi chose 8.0.2.0 against this document"
            );
            assert!(why.contains("skipped uA046D008"), "{why}");
            assert!(why.contains("27 releases"), "{why}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn vcenter_6_7_document_negotiates_6_7() {
    // The shape older vCenters publish: digits as the current version, pre-5.0 names among
    // the prior versions, and a second namespace.
    let doc = br#"<?xml version="1.0" encoding="UTF-8" ?>
<namespaces version="1.0">
 <namespace>
  <name>urn:vim25</name>
  <version>6.7</version>
  <priorVersions><version>6.5</version><version>6.0</version><version>5.5</version><version>2.5u2server</version></priorVersions>
 </namespace>
 <namespace><name>urn:vim2</name><version>2.0</version></namespace>
</namespaces>"#;
    assert!(matches!(speak(doc), Choice::Speak { version, .. } if version == "6.7"));
}

#[test]
fn choices_at_the_edges() {
    let doc = |current: &str, prior: &[&str]| ServiceVersions {
        current: current.into(),
        prior: prior.iter().map(|s| s.to_string()).collect(),
    };
    // Newer than anything known: the newest listed release.
    assert!(matches!(
        versions::choose(&doc("10.0.0.0", &["9.5.0.0"])),
        Choice::Speak { version, .. } if version == "10.0.0.0"
    ));
    // Known releases win over unknown newer ones.
    assert!(matches!(
        versions::choose(&doc("9.1.0.0", &["9.0.0.0", "8.0.3.0"])),
        Choice::Speak { version, .. } if version == "9.0.0.0"
    ));
    // Numeric comparison, not text: 6.7.1 > 6.7 and 10.0 > 9.0.
    assert!(matches!(
        versions::choose(&doc("6.7", &["6.7.1"])),
        Choice::Speak { version, .. } if version == "6.7.1"
    ));
    assert_eq!(
        versions::choose(&doc("4.1", &["4.0", "2.5u2"])),
        Choice::TooOld {
            newest: "4.1".into()
        }
    );
    assert_eq!(versions::choose(&doc("uX", &["beta"])), Choice::NoRelease);
    assert!(versions::parse(b"<html><body>404 Not Found</body></html>").is_err());
    assert!(versions::parse(b"<namespaces><namespace><name>urn:pbm</name><version>1.0</version></namespace></namespaces>").is_err());
    assert!(versions::parse(b"not xml").is_err());
    assert_eq!(versions::release("8.0.2.0"), Some(vec![8, 0, 2, 0]));
    assert_eq!(versions::release("uA046D008"), None);
    assert_eq!(versions::release("6.7\"x"), None);
    assert_eq!(versions::release("1.2.3.4.5"), None);
    assert!(versions::older_than_min("4.1") && !versions::older_than_min("5.0"));
    assert!(!versions::older_than_min("uA046D008"));
    // Every known version is a release, and newest first.
    let known: Vec<Vec<u32>> = versions::KNOWN_VERSIONS
        .iter()
        .map(|v| versions::release(v).unwrap())
        .collect();
    assert!(
        known
            .windows(2)
            .all(|w| versions::cmp_release(&w[0], &w[1]).is_gt())
    );
}

#[test]
fn about_of_a_recorded_vcenter_8_0_3() {
    let reply = decode_reply(
        include_bytes!("../../../fixtures/pyvmomi/service_content_vc803.xml"),
        "RetrieveServiceContent",
    )
    .unwrap();
    let sc = parse_service_content(&reply).unwrap();
    assert_eq!(
        sc.about,
        About {
            name: "VMware vCenter Server".into(),
            full_name: "VMware vCenter Server 8.0.3 build-69507950".into(),
            version: "8.0.3".into(),
            build: "69507950".into(),
            api_type: "VirtualCenter".into(),
            api_version: "8.0.2.0".into(),
        }
    );
    assert_eq!(sc.license_manager.as_ref().unwrap().value, "LicenseManager");
    compat::check_service("https://vcsa/sdk", &sc).unwrap();
}

#[test]
fn too_old_or_without_guest_operations_is_refused() {
    let reply = decode_reply(
        include_bytes!("../../../fixtures/pyvmomi/service_content_vc803.xml"),
        "RetrieveServiceContent",
    )
    .unwrap();
    let mut sc = parse_service_content(&reply).unwrap();
    sc.about.api_version = "4.1".into();
    let e = compat::check_service("https://vc/sdk", &sc).unwrap_err();
    assert!(matches!(e, VcError::Unsupported { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "VMware vCenter Server 8.0.3 build-69507950 (API 4.1) at https://vc/sdk cannot run this fault: guest operations need vSphere API 5.0 or newer: upgrade the server, or point GOVC_URL at a newer vCenter that manages these VMs"
    );
    sc.about.api_version = "8.0.2.0".into();
    sc.guest_operations_manager = None;
    let e = compat::check_service("https://vc/sdk", &sc).unwrap_err();
    assert!(
        e.to_string()
            .contains("publishes no GuestOperationsManager"),
        "{e}"
    );
}

#[test]
fn free_hypervisor_editions() {
    assert!(compat::free_edition(
        "esxBasic",
        "VMware vSphere 7 Hypervisor"
    ));
    assert!(compat::free_edition("esx.hypervisor.cpuPackage", ""));
    assert!(!compat::free_edition("eval", "Evaluation Mode"));
    assert!(!compat::free_edition(
        "esx.enterprisePlus.cpuPackage",
        "VMware vSphere 8 Enterprise Plus"
    ));
    let reply = decode_reply(
        envelope(r#"<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="LicenseManager">ha-license-manager</obj><propSet><name>licenses</name><val xsi:type="ArrayOfLicenseManagerLicenseInfo"><LicenseManagerLicenseInfo xsi:type="LicenseManagerLicenseInfo"><licenseKey>00000-00000-00000-00000-00000</licenseKey><editionKey>esxBasic</editionKey><name>VMware vSphere 7 Hypervisor</name><total>0</total><used>2</used><costUnit>cpuPackage</costUnit></LicenseManagerLicenseInfo></val></propSet></objects></returnval></RetrievePropertiesExResponse>"#).as_bytes(),
        "RetrievePropertiesEx",
    )
    .unwrap();
    assert_eq!(
        compat::parse_licenses(&reply),
        vec![(
            "esxBasic".to_string(),
            "VMware vSphere 7 Hypervisor".to_string()
        )]
    );
}

#[test]
fn recorded_esxi_host_management_ip_and_thumbprint() {
    // vCenter's own view of an ESXi 8.0.3 host: two candidate management vmknics, one selected.
    let info = xml::parse(include_bytes!(
        "../../../fixtures/pyvmomi/host_virtual_nic_manager_info_esxi803.xml"
    ))
    .unwrap();
    assert_eq!(
        management_ips(info.children_named("netConfig")),
        vec!["10.218.43.170".parse::<std::net::IpAddr>().unwrap()]
    );
    let reply = decode_reply(
        include_bytes!("../../../fixtures/pyvmomi/host_summary_esxi803.xml"),
        "Fetch",
    )
    .unwrap();
    let summary = reply.child("returnval").unwrap();
    let tp = summary
        .path(&["config", "sslThumbprint"])
        .unwrap()
        .text
        .trim();
    let pin = super::super::pinned::Thumbprint::parse(tp).unwrap();
    assert_eq!(pin.to_string(), tp);
    let product = About::from_element(summary.path(&["config", "product"]));
    assert_eq!(product.api_type, "HostAgent");
    assert_eq!(product.full_name, "VMware ESXi 8.0.3 build-69507956");
}

#[test]
fn host_facts_from_retrieve_properties() {
    let reply = decode_reply(
        envelope(r#"<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><objects><obj type="HostSystem">host-12</obj><propSet><name>config.virtualNicManagerInfo.netConfig</name><val xsi:type="ArrayOfVirtualNicManagerNetConfig"><VirtualNicManagerNetConfig xsi:type="VirtualNicManagerNetConfig"><nicType>vmotion</nicType><multiSelectAllowed>true</multiSelectAllowed><candidateVnic><device>vmk1</device><key>vmotion.key-vim.host.VirtualNic-vmk1</key><spec><ip><dhcp>false</dhcp><ipAddress>198.18.9.9</ipAddress></ip></spec></candidateVnic><selectedVnic>vmotion.key-vim.host.VirtualNic-vmk1</selectedVnic></VirtualNicManagerNetConfig><VirtualNicManagerNetConfig xsi:type="VirtualNicManagerNetConfig"><nicType>management</nicType><multiSelectAllowed>true</multiSelectAllowed><candidateVnic><device>vmk0</device><key>management.key-vim.host.VirtualNic-vmk0</key><spec><ip><dhcp>false</dhcp><ipAddress>198.18.0.10</ipAddress></ip></spec></candidateVnic><selectedVnic>management.key-vim.host.VirtualNic-vmk0</selectedVnic></VirtualNicManagerNetConfig></val></propSet><propSet><name>name</name><val xsi:type="xsd:string">esx-12.lab.internal</val></propSet><propSet><name>summary.config.sslThumbprint</name><val xsi:type="xsd:string">19:32:16:04:8B:77:FB:91:5E:D2:A6:87:6D:A5:5A:08:0F:C9:BA:F5</val></propSet></objects></returnval></RetrievePropertiesExResponse>"#).as_bytes(),
        "RetrievePropertiesEx",
    )
    .unwrap();
    let host = MoRef::new("HostSystem", "host-12");
    let facts = parse_host(&reply, &host);
    assert_eq!(facts.name, "esx-12.lab.internal");
    assert_eq!(facts.moref, host);
    assert_eq!(
        facts.thumbprint.as_deref(),
        Some("19:32:16:04:8B:77:FB:91:5E:D2:A6:87:6D:A5:5A:08:0F:C9:BA:F5")
    );
    assert_eq!(
        facts.management_ips,
        vec!["198.18.0.10".parse::<std::net::IpAddr>().unwrap()]
    );
    let empty = decode_reply(
        envelope(
            r#"<RetrievePropertiesExResponse xmlns="urn:vim25"></RetrievePropertiesExResponse>"#,
        )
        .as_bytes(),
        "RetrievePropertiesEx",
    )
    .unwrap();
    assert_eq!(parse_host(&empty, &host).thumbprint, None);
}
