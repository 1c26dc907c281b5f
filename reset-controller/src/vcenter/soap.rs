//! vim25 SOAP envelopes: request encoding and reply/fault decoding. Pure functions,
//! no I/O, so every call and fault is unit-tested against recorded XML.

use super::xml::{self, Element, XmlError};

/// The SOAPAction header for an API version: `urn:vim25/8.0.2.0`.
pub fn soap_action(version: &str) -> String {
    format!("urn:vim25/{version}")
}

const ENVELOPE_OPEN: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/""#,
    r#" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#,
    r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>"#
);
const ENVELOPE_CLOSE: &str = "</soapenv:Body></soapenv:Envelope>";

/// A managed object reference: `<tag type="Type">value</tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoRef {
    /// Managed object type, e.g. `VirtualMachine`.
    pub kind: String,
    /// Server-side id, e.g. `vm-42`.
    pub value: String,
}

impl MoRef {
    /// A reference from its type and id.
    pub fn new(kind: &str, value: &str) -> Self {
        Self {
            kind: kind.to_string(),
            value: value.to_string(),
        }
    }

    /// Read a reference from an element with a `type` attribute.
    pub fn from_element(e: &Element) -> Option<Self> {
        let kind = e.attr("type").or(e.xsi_type.as_deref())?;
        let value = e.text.trim();
        (!value.is_empty()).then(|| Self::new(kind, value))
    }
}

/// Builds the body of one request: `<Method xmlns="urn:vim25">...</Method>`.
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    inner: String,
}

impl Request {
    /// Start a call of `method` on `this`.
    pub fn new(method: &'static str, this: &MoRef) -> Self {
        Self {
            method,
            inner: String::new(),
        }
        .moref("_this", this)
    }

    /// The method name.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Append `<tag type="...">value</tag>`.
    pub fn moref(mut self, tag: &str, r: &MoRef) -> Self {
        self.inner.push_str(&format!(
            r#"<{tag} type="{}">{}</{tag}>"#,
            xml::escape(&r.kind),
            xml::escape(&r.value)
        ));
        self
    }

    /// Append `<tag>escaped text</tag>`.
    pub fn text(mut self, tag: &str, value: &str) -> Self {
        self.inner
            .push_str(&format!("<{tag}>{}</{tag}>", xml::escape(value)));
        self
    }

    /// Append already-encoded XML (built with [`Request::text`]-like helpers).
    pub fn raw(mut self, xml: &str) -> Self {
        self.inner.push_str(xml);
        self
    }

    /// The whole envelope.
    pub fn into_envelope(self) -> String {
        format!(
            r#"{ENVELOPE_OPEN}<{m} xmlns="urn:vim25">{}</{m}>{ENVELOPE_CLOSE}"#,
            self.inner,
            m = self.method
        )
    }
}

/// `<tag>text</tag>` with escaping, for nested structures.
pub fn leaf(tag: &str, value: &str) -> String {
    format!("<{tag}>{}</{tag}>", xml::escape(value))
}

/// A SOAP fault as vCenter sends it: HTTP 500, `faultstring`, and the fault type in
/// `detail` (`<InvalidGuestLoginFault xsi:type="InvalidGuestLogin">`; the type is
/// taken from `xsi:type` when present, else from the element name minus `Fault`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The vim25 fault type, e.g. `InvalidGuestLogin`; `Unknown` without detail.
    pub kind: String,
    /// The server's `faultstring`, possibly empty.
    pub message: String,
    /// The fault's own element (fields such as `existingState`), if any.
    pub detail: Option<Element>,
}

impl Fault {
    /// Text of a field of the fault's detail, e.g. `existingState`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.detail.as_ref()?.child_text(name)
    }
}

/// `": detail"`, or nothing when the server gave no detail: a message never ends in `": "`.
/// The client's errors ([`super::error`], which imports this module) word details with it too.
pub fn colon(detail: &str) -> String {
    let d = detail.trim();
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

/// Why a reply could not be turned into a result.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The server answered with a SOAP fault.
    #[error("SOAP fault {}{}", .0.kind, colon(&.0.message))]
    Fault(Box<Fault>),
    /// The reply is not XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The reply is XML but not the expected envelope.
    #[error("{0}")]
    Shape(String),
}

/// Decode a reply to `method`: the `<MethodResponse>` element, or the fault.
pub fn decode_reply(body: &[u8], method: &str) -> Result<Element, DecodeError> {
    let root = xml::parse(body)?;
    if root.name != "Envelope" {
        return Err(DecodeError::Shape(format!(
            "expected a SOAP Envelope, got <{}>",
            root.name
        )));
    }
    let payload = root
        .child("Body")
        .and_then(|b| b.children.first())
        .ok_or_else(|| DecodeError::Shape("SOAP Body is empty".into()))?;
    if payload.name == "Fault" {
        return Err(DecodeError::Fault(Box::new(decode_fault(payload))));
    }
    let expected = format!("{method}Response");
    if payload.name != expected {
        return Err(DecodeError::Shape(format!(
            "expected <{expected}>, got <{}>",
            payload.name
        )));
    }
    Ok(payload.clone())
}

fn decode_fault(f: &Element) -> Fault {
    let message = f.child_text("faultstring").unwrap_or("").trim().to_string();
    let detail = f.child("detail").and_then(|d| d.children.first()).cloned();
    let kind = detail
        .as_ref()
        .map(|d| match &d.xsi_type {
            Some(t) => t.clone(),
            None => d.name.strip_suffix("Fault").unwrap_or(&d.name).to_string(),
        })
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "Unknown".to_string());
    Fault {
        kind,
        message,
        detail,
    }
}

/// The `returnval` children of a reply.
pub fn returnvals(reply: &Element) -> impl Iterator<Item = &Element> {
    reply.children_named("returnval")
}

/// The single `returnval` of a reply, or a shape error.
pub fn returnval(reply: &Element) -> Result<&Element, DecodeError> {
    reply
        .child("returnval")
        .ok_or_else(|| DecodeError::Shape(format!("<{}> has no returnval", reply.name)))
}
