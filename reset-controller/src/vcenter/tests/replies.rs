//! Reply decoding against recorded XML.

use super::*;

#[test]
fn service_content_and_login() {
    let reply = decode_reply(
        include_bytes!("../../../fixtures/service_content.xml"),
        "RetrieveServiceContent",
    )
    .unwrap();
    let sc = parse_service_content(&reply).unwrap();
    assert_eq!(sc.root_folder, MoRef::new("Folder", "group-d1"));
    assert_eq!(sc.property_collector.value, "propertyCollector");
    assert_eq!(sc.session_manager.value, "SessionManager");
    assert_eq!(
        sc.guest_operations_manager.unwrap().value,
        "guestOperationsManager"
    );
    assert_eq!(sc.api_version, "8.0.2.0");

    let req = login_request(
        &MoRef::new("SessionManager", "SessionManager"),
        "a@vsphere.local",
        "s&cret",
    );
    assert_eq!(
        body_of(req),
        r#"<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>a@vsphere.local</userName><password>s&amp;cret</password></Login>"#
    );
    let reply = decode_reply(include_bytes!("../../../fixtures/login.xml"), "Login").unwrap();
    assert!(reply.path(&["returnval", "key"]).is_some());
    assert!(matches!(
        decode_reply(include_bytes!("../../../fixtures/login.xml"), "Logout"),
        Err(DecodeError::Shape(_))
    ));
}

#[test]
fn container_view_and_retrieve_properties() {
    let req = collector::create_container_view_request(
        &MoRef::new("ViewManager", "ViewManager"),
        &MoRef::new("Folder", "group-d1"),
        "VirtualMachine",
    );
    assert_eq!(
        body_of(req),
        r#"<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this><container type="Folder">group-d1</container><type>VirtualMachine</type><recursive>true</recursive></CreateContainerView>"#
    );
    let view = MoRef::new("ContainerView", "session[52e1a4b7]52a1");
    let req = collector::retrieve_request(
        &MoRef::new("PropertyCollector", "propertyCollector"),
        &view,
        "VirtualMachine",
        &["name"],
        true,
    );
    assert_eq!(
        body_of(req),
        r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet></propSet><objectSet><obj type="ContainerView">session[52e1a4b7]52a1</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options></options></RetrievePropertiesEx>"#
    );

    let reply = decode_reply(
        include_bytes!("../../../fixtures/retrieve_vms.xml"),
        "RetrievePropertiesEx",
    )
    .unwrap();
    let (mut objs, token) = parse_retrieve(&reply);
    assert_eq!(token.as_deref(), Some("1"));
    assert_eq!(objs.len(), 3);
    // The second page has no xsi:type on values: still read.
    let reply = decode_reply(
        include_bytes!("../../../fixtures/continue_vms.xml"),
        "ContinueRetrievePropertiesEx",
    )
    .unwrap();
    let (mut more, token) = parse_retrieve(&reply);
    assert_eq!(token, None);
    objs.append(&mut more);

    let names: Vec<String> = ["web-01", "db-01", "twin", "nope"]
        .map(String::from)
        .to_vec();
    let found = inventory::match_vms(&objs, &names);
    let web = found["web-01"].as_ref().unwrap();
    assert_eq!(web.moref, vm());
    assert!(web.check_ready().is_ok());
    let db = found["db-01"].as_ref().unwrap();
    let e = db.check_ready().unwrap_err().to_string();
    assert_eq!(
        e,
        "VM db-01 is poweredOff, guest operations need it poweredOn: power it on first"
    );
    let tools = crate::vcenter::VmInfo {
        power_state: "poweredOn".into(),
        ..db.clone()
    };
    assert!(matches!(
        tools.check_ready(),
        Err(VcError::ToolsNotRunning { .. })
    ));
    assert!(matches!(
        &found["twin"],
        Err(VcError::VmAmbiguous { count: 2, .. })
    ));
    let e = found["nope"].as_ref().unwrap_err().to_string();
    assert_eq!(e, "no VM named nope in vCenter inventory: check VM_NAME");

    let empty = decode_reply(
        envelope(
            r#"<RetrievePropertiesExResponse xmlns="urn:vim25"></RetrievePropertiesExResponse>"#,
        )
        .as_bytes(),
        "RetrievePropertiesEx",
    )
    .unwrap();
    assert_eq!(parse_retrieve(&empty), (vec![], None));

    let reply = decode_reply(
        include_bytes!("../../../fixtures/guest_managers.xml"),
        "RetrievePropertiesEx",
    )
    .unwrap();
    let (objs, _) = parse_retrieve(&reply);
    let file = MoRef::from_element(&objs[0].props["fileManager"]).unwrap();
    assert_eq!(
        file,
        MoRef::new("GuestFileManager", "guestOperationsFileManager")
    );
}

#[test]
fn guest_operation_replies() {
    let void = |m: &str| envelope(&format!(r#"<{m}Response xmlns="urn:vim25"></{m}Response>"#));
    for m in [
        "ValidateCredentialsInGuest",
        "ChangeFileAttributesInGuest",
        "DeleteFileInGuest",
        "DeleteDirectoryInGuest",
        "MakeDirectoryInGuest",
        "TerminateProcessInGuest",
        "Logout",
        "DestroyView",
    ] {
        decode_reply(void(m).as_bytes(), m).unwrap();
    }
    let r = decode_reply(
        envelope(r#"<StartProgramInGuestResponse xmlns="urn:vim25"><returnval>4242</returnval></StartProgramInGuestResponse>"#).as_bytes(),
        "StartProgramInGuest",
    )
    .unwrap();
    assert_eq!(ops::parse_pid(&r), Some(4242));
    let r = decode_reply(
        envelope(r#"<InitiateFileTransferToGuestResponse xmlns="urn:vim25"><returnval>https://*:443/guestFile?id=10&amp;token=52d9</returnval></InitiateFileTransferToGuestResponse>"#).as_bytes(),
        "InitiateFileTransferToGuest",
    )
    .unwrap();
    assert_eq!(
        ops::parse_string(&r).as_deref(),
        Some("https://*:443/guestFile?id=10&token=52d9")
    );
    let r = decode_reply(
        envelope(r#"<CreateTemporaryDirectoryInGuestResponse xmlns="urn:vim25"><returnval>/tmp/reset-peer-Xa9QzB</returnval></CreateTemporaryDirectoryInGuestResponse>"#).as_bytes(),
        "CreateTemporaryDirectoryInGuest",
    )
    .unwrap();
    assert_eq!(
        ops::parse_string(&r).as_deref(),
        Some("/tmp/reset-peer-Xa9QzB")
    );
    let r = decode_reply(
        include_bytes!("../../../fixtures/transfer_from.xml"),
        "InitiateFileTransferFromGuest",
    )
    .unwrap();
    let (url, size) = ops::parse_transfer_from(&r).unwrap();
    assert_eq!(size, 1873);
    assert!(url.starts_with("https://*:443/guestFile?id=11&token="));
    let r = decode_reply(
        include_bytes!("../../../fixtures/list_processes.xml"),
        "ListProcessesInGuest",
    )
    .unwrap();
    let ps = ops::parse_processes(&r);
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0].exited(), None, "running: no endTime");
    assert_eq!(ps[1].exited(), Some(0), "endTime without exitCode means 0");
    assert_eq!(ps[2].exited(), Some(3));
}

#[test]
fn hostile_replies_are_errors_not_panics() {
    for body in [
        "",
        "not xml",
        "<html><body>502 Bad Gateway</body></html>",
        &envelope(""),
        &envelope("<MResponse>"),
        &envelope("<OtherResponse/>"),
        "<soapenv:Envelope xmlns:soapenv=\"x\"><soapenv:Body><soapenv:Fault/></soapenv:Body></soapenv:Envelope>",
    ] {
        match decode_reply(body.as_bytes(), "M") {
            Ok(r) => panic!("accepted {body:?}: {r:?}"),
            Err(e) => {
                let e = VcError::from_decode(e, cx());
                assert!(!e.to_string().is_empty());
            }
        }
    }
    let r = decode_reply(
        envelope(r#"<MResponse xmlns="urn:vim25"><returnval>x</returnval></MResponse>"#).as_bytes(),
        "M",
    )
    .unwrap();
    assert_eq!(ops::parse_pid(&r), None);
    assert!(ops::parse_processes(&r).is_empty());
}
