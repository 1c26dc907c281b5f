//! Fault decoding and the messages users see.

use super::*;

#[test]
fn every_fault_maps_to_an_actionable_error() {
    let e = decode_fault(&fault(
        "InvalidGuestLogin",
        "Failed to authenticate with the guest operating system using the supplied credentials.",
        "",
    ));
    assert_eq!(
        e.to_string(),
        "guest login failed for user root on VM web-01: check VM_USER_NAME/VM_PASSWORD"
    );
    let e = decode_fault(&fault(
        "InvalidLogin",
        "Cannot complete login due to an incorrect user name or password.",
        "",
    ));
    assert_eq!(
        e.to_string(),
        "vCenter login failed for user administrator@vsphere.local: check GOVC_USERNAME/GOVC_PASSWORD"
    );
    let e = decode_fault(&fault(
        "GuestOperationsUnavailable",
        "The guest operations agent could not be contacted.",
        "",
    ));
    assert!(matches!(e, VcError::GuestOperationsUnavailable { .. }));
    assert!(
        e.to_string().contains("VMware Tools must be running"),
        "{e}"
    );
    let e = decode_fault(&fault(
        "InvalidPowerState",
        "The attempted operation cannot be performed in the current state (Powered off).",
        "<requestedState>poweredOn</requestedState><existingState>poweredOff</existingState>",
    ));
    assert_eq!(
        e.to_string(),
        "VM web-01 is poweredOff, guest operations need it poweredOn: power it on first"
    );
    let e = decode_fault(&fault(
        "NotAuthenticated",
        "The session is not authenticated.",
        r#"<object type="Folder">group-d1</object><privilegeId>System.View</privilegeId>"#,
    ));
    assert!(matches!(e, VcError::NotAuthenticated { .. }), "{e:?}");
    let e = decode_fault(&fault(
        "FileNotFound",
        "File /tmp/x was not found",
        "<file>/tmp/x</file>",
    ));
    assert_eq!(
        e.to_string(),
        "file not found in VM web-01: File /tmp/x was not found"
    );
    let e = decode_fault(&fault(
        "GuestPermissionDenied",
        "Insufficient permissions in guest operating system.",
        "",
    ));
    assert!(matches!(e, VcError::GuestPermissionDenied { .. }));
    let e = decode_fault(&fault(
        "GuestProcessNotFound",
        "The process 7 was not found.",
        "<pid>7</pid>",
    ));
    assert!(matches!(e, VcError::GuestProcessNotFound { .. }));
    let e = decode_fault(&fault(
        "NoPermission",
        "Permission to perform this operation was denied.",
        r#"<object type="VirtualMachine">vm-42</object><privilegeId>VirtualMachine.GuestOperations.Execute</privilegeId>"#,
    ));
    assert!(
        e.to_string()
            .contains("VirtualMachine.GuestOperations.Execute"),
        "{e}"
    );
    let e = decode_fault(&fault(
        "MethodNotFound",
        "vm-42 does not implement: ValidateCredentialsInGuest",
        "",
    ));
    assert!(matches!(e, VcError::MethodNotFound { .. }));
    let e = decode_fault(&fault("SystemError", "boom", "<reason>x</reason>"));
    assert_eq!(e.to_string(), "vCenter fault SystemError in M: boom");
}

#[test]
fn fault_type_without_xsi_type_and_without_detail() {
    let xml = envelope(
        r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>bad creds</faultstring><detail><InvalidGuestLoginFault xmlns="urn:vim25"/></detail></soapenv:Fault>"#,
    );
    assert!(matches!(
        decode_fault(&xml),
        VcError::InvalidGuestLogin { .. }
    ));
    let xml = envelope(
        r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>nope</faultstring></soapenv:Fault>"#,
    );
    let e = decode_fault(&xml);
    assert_eq!(e.to_string(), "vCenter fault Unknown in M: nope");
}

#[test]
fn an_empty_faultstring_leaves_no_dangling_detail() {
    // Faults vCenter sends without a faultstring (UnknownLicenseProblem on Login was seen).
    let xml = envelope(
        r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring></faultstring><detail><UnknownLicenseProblemFault xmlns="urn:vim25" xsi:type="UnknownLicenseProblem"></UnknownLicenseProblemFault></detail></soapenv:Fault>"#,
    );
    let cx = Context {
        method: "Login",
        ..cx()
    };
    let e = match decode_reply(xml.as_bytes(), "Login") {
        Err(e) => VcError::from_decode(e, cx),
        Ok(_) => panic!("expected a fault"),
    };
    assert_eq!(
        e.to_string(),
        "vCenter fault UnknownLicenseProblem in Login"
    );
    let xml = envelope(
        r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>  </faultstring></soapenv:Fault>"#,
    );
    assert_eq!(decode_fault(&xml).to_string(), "vCenter fault Unknown in M");
    // Every fault with an empty faultstring: no message ends in ": ", none has "()".
    for kind in [
        "NotAuthenticated",
        "GuestOperationsUnavailable",
        "FileNotFound",
        "GuestPermissionDenied",
        "GuestProcessNotFound",
        "MethodNotFound",
        "RestrictedVersion",
        "SystemError",
    ] {
        let msg = decode_fault(&fault(kind, "", "")).to_string();
        assert!(
            !msg.trim_end().ends_with(':') && !msg.contains("()") && !msg.contains(": :"),
            "{kind}: {msg}"
        );
    }
    match decode_reply(xml.as_bytes(), "M") {
        Err(e) => assert_eq!(e.to_string(), "SOAP fault Unknown"),
        Ok(_) => panic!("expected a fault"),
    }
}

#[test]
fn recorded_invalid_login_and_restricted_version() {
    let body = include_str!("../../../fixtures/pyvmomi/login_invalid_login_vc60.xml");
    let e = decode_fault(body);
    assert!(matches!(e, VcError::InvalidLogin { .. }), "{e:?}");
    let e = decode_fault(&fault(
        "RestrictedVersion",
        "Current license or ESXi version prohibits execution of the requested operation.",
        "",
    ));
    assert!(matches!(e, VcError::LicenseRestricted { .. }), "{e:?}");
    assert!(
        e.to_string().contains("point GOVC_URL at the vCenter"),
        "{e}"
    );
}
