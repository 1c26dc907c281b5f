//! Encode and decode recorded vim25 XML (fixtures/ and inline envelopes) for every
//! call and fault the client uses.

mod compat;
mod faults;
mod regressions;
mod replies;
mod requests;

use super::collector::{self, parse_retrieve};
use super::error::{Context, VcError};
use super::guest_ops::{self as ops, GuestAuth, ProgramSpec};
use super::inventory;
use super::service::parse_service_content;
use super::session::login_request;
use super::soap::{DecodeError, MoRef, Request, decode_reply};
use crate::secret::Secret;

pub(super) const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
"#;
pub(super) const TAIL: &str = "\n</soapenv:Body>\n</soapenv:Envelope>";

pub(super) fn envelope(body: &str) -> String {
    format!("{HEAD}{body}{TAIL}")
}

pub(super) fn fault(kind: &str, message: &str, inner: &str) -> String {
    envelope(&format!(
        r#"<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{message}</faultstring><detail><{kind}Fault xmlns="urn:vim25" xsi:type="{kind}">{inner}</{kind}Fault></detail></soapenv:Fault>"#
    ))
}

pub(super) fn vm() -> MoRef {
    MoRef::new("VirtualMachine", "vm-42")
}

pub(super) fn auth() -> GuestAuth {
    GuestAuth {
        user: "root".into(),
        password: Secret::new("p<&>'\""),
    }
}

pub(super) const AUTH_XML: &str = r#"<vm type="VirtualMachine">vm-42</vm><auth xsi:type="NamePasswordAuthentication"><interactiveSession>false</interactiveSession><username>root</username><password>p&lt;&amp;&gt;&apos;&quot;</password></auth>"#;

pub(super) fn body_of(r: Request) -> String {
    let env = r.into_envelope();
    let start = env.find("<soapenv:Body>").unwrap() + "<soapenv:Body>".len();
    let end = env.find("</soapenv:Body>").unwrap();
    env[start..end].to_string()
}

pub(super) fn cx() -> Context<'static> {
    Context {
        method: "M",
        vm: "web-01",
        guest_user: "root",
        vc_user: "administrator@vsphere.local",
    }
}

pub(super) fn decode_fault(xml: &str) -> VcError {
    match decode_reply(xml.as_bytes(), "M") {
        Err(e) => VcError::from_decode(e, cx()),
        Ok(_) => panic!("expected a fault"),
    }
}
