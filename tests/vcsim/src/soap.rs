//! Reply and fault envelopes in the shapes vCenter sends: faults are HTTP 500 with
//! `<detail><XFault xmlns="urn:vim25" xsi:type="X">fields</XFault></detail>`.

use crate::xml::esc;

const HEAD: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    "\n",
    r#"<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/""#,
    "\n",
    r#" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/""#,
    "\n",
    r#" xmlns:xsd="http://www.w3.org/2001/XMLSchema""#,
    "\n",
    r#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
    "\n<soapenv:Body>\n"
);
const TAIL: &str = "\n</soapenv:Body>\n</soapenv:Envelope>";

/// A vim25 fault: type, message, inner fields (already XML).
#[derive(Debug, Clone)]
pub struct Fault {
    /// Fault type, e.g. `InvalidGuestLogin`.
    pub kind: &'static str,
    /// faultstring.
    pub message: String,
    /// Encoded fields inside the detail element.
    pub fields: String,
}

impl Fault {
    /// A fault without fields.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fields: String::new(),
        }
    }

    /// Add fields.
    pub fn with(mut self, fields: String) -> Self {
        self.fields = fields;
        self
    }

    /// The envelope.
    pub fn envelope(&self) -> String {
        format!(
            r#"{HEAD}<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{}</faultstring><detail><{k}Fault xmlns="urn:vim25" xsi:type="{k}">{}</{k}Fault></detail></soapenv:Fault>{TAIL}"#,
            esc(&self.message),
            self.fields,
            k = self.kind
        )
    }
}

/// A successful reply: `<MethodResponse xmlns="urn:vim25">inner</MethodResponse>`.
pub fn reply(method: &str, inner: &str) -> String {
    format!(r#"{HEAD}<{method}Response xmlns="urn:vim25">{inner}</{method}Response>{TAIL}"#)
}

/// `<tag>escaped</tag>`.
pub fn leaf(tag: &str, v: &str) -> String {
    format!("<{tag}>{}</{tag}>", esc(v))
}

/// `<tag type="T">v</tag>`.
pub fn moref(tag: &str, kind: &str, v: &str) -> String {
    format!(r#"<{tag} type="{kind}">{}</{tag}>"#, esc(v))
}

/// Common faults.
pub mod faults {
    use super::{Fault, leaf, moref};

    /// No or unknown session.
    pub fn not_authenticated(kind: &str, this: &str) -> Fault {
        Fault::new("NotAuthenticated", "The session is not authenticated.").with(format!(
            "{}{}",
            moref("object", kind, this),
            leaf("privilegeId", "System.View")
        ))
    }

    /// Bad vCenter credentials.
    pub fn invalid_login() -> Fault {
        Fault::new(
            "InvalidLogin",
            "Cannot complete login due to an incorrect user name or password.",
        )
    }

    /// Bad guest credentials.
    pub fn invalid_guest_login() -> Fault {
        Fault::new(
            "InvalidGuestLogin",
            "Failed to authenticate with the guest operating system using the supplied credentials.",
        )
    }

    /// VM not powered on.
    pub fn invalid_power_state() -> Fault {
        Fault::new(
            "InvalidPowerState",
            "The attempted operation cannot be performed in the current state (Powered off).",
        )
        .with(format!(
            "{}{}",
            leaf("requestedState", "poweredOn"),
            leaf("existingState", "poweredOff")
        ))
    }

    /// Tools not running.
    pub fn guest_operations_unavailable() -> Fault {
        Fault::new(
            "GuestOperationsUnavailable",
            "The guest operations agent could not be contacted.",
        )
    }

    /// Missing file.
    pub fn file_not_found(path: &str) -> Fault {
        Fault::new("FileNotFound", format!("File {path} was not found")).with(leaf("file", path))
    }

    /// Existing file, overwrite false.
    pub fn file_already_exists(path: &str) -> Fault {
        Fault::new("FileAlreadyExists", format!("File {path} already exists"))
            .with(leaf("file", path))
    }

    /// Not a regular file.
    pub fn not_a_file(path: &str) -> Fault {
        Fault::new("NotAFile", format!("{path} is not a file")).with(leaf("file", path))
    }

    /// OS permission error.
    pub fn guest_permission_denied() -> Fault {
        Fault::new(
            "GuestPermissionDenied",
            "Insufficient permissions in guest operating system.",
        )
    }

    /// Unknown pid.
    pub fn guest_process_not_found(pid: i64) -> Fault {
        Fault::new(
            "GuestProcessNotFound",
            format!("The guest process {pid} was not found."),
        )
        .with(leaf("pid", &pid.to_string()))
    }

    /// Unknown object.
    pub fn managed_object_not_found(kind: &str, v: &str) -> Fault {
        Fault::new("ManagedObjectNotFound", format!("The object '{kind}:{v}' has already been deleted or has not been completely created"))
            .with(moref("obj", kind, v))
    }

    /// Unknown method.
    pub fn method_not_found(this: &str, method: &str) -> Fault {
        Fault::new(
            "MethodNotFound",
            format!("{this} does not implement: {method}"),
        )
        .with(leaf("method", method))
    }

    /// Malformed request.
    pub fn invalid_request(msg: &str) -> Fault {
        Fault::new("InvalidRequest", msg.to_string())
    }

    /// Bad argument.
    pub fn invalid_argument(name: &str) -> Fault {
        Fault::new(
            "InvalidArgument",
            format!("A specified parameter was not correct: {name}"),
        )
        .with(leaf("invalidProperty", name))
    }

    /// Host-side I/O failure.
    pub fn system_error(msg: &str) -> Fault {
        Fault::new("SystemError", msg.to_string()).with(leaf("reason", msg))
    }
}
