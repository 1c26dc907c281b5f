//! The client's error type: one variant per fault or failure a caller branches on,
//! each message saying what to do.

use super::soap::{DecodeError, Fault, colon};

/// Everything that can go wrong talking to vCenter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VcError {
    /// TCP connect or DNS failure: the request never reached vCenter.
    #[error(
        "cannot reach vCenter at {url}: {reason}: check GOVC_URL and that the host is reachable"
    )]
    Unreachable {
        /// The URL called.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The connection failed or timed out after the request was sent: vCenter may or may
    /// not have carried it out.
    #[error(
        "the connection to vCenter at {url} failed mid-call: {reason}: vCenter may be restarting or overloaded"
    )]
    ConnectionLost {
        /// The URL called.
        url: String,
        /// What the transport said.
        reason: String,
    },
    /// The TLS handshake failed, usually an untrusted certificate.
    #[error(
        "TLS handshake with {url} failed: {reason}: set GOVC_TLS_CA_CERTS to vCenter's CA bundle, or GOVC_INSECURE=true to skip verification"
    )]
    Tls {
        /// The URL called.
        url: String,
        /// What the TLS layer said.
        reason: String,
    },
    /// GOVC_TLS_CA_CERTS could not be read or parsed.
    #[error("cannot use GOVC_TLS_CA_CERTS file {path}: {reason}")]
    CaCerts {
        /// The file named.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// GOVC_URL is not a usable URL.
    #[error("GOVC_URL {url:?} is not valid: {reason}: use https://HOST/sdk or HOST")]
    BadUrl {
        /// The value given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// vCenter rejected GOVC_USERNAME/GOVC_PASSWORD.
    #[error("vCenter login failed for user {user}: check GOVC_USERNAME/GOVC_PASSWORD")]
    InvalidLogin {
        /// The vCenter user.
        user: String,
    },
    /// The session is missing or expired.
    #[error(
        "vCenter says the session is not authenticated{}: the session expired or login did not complete; run again",
        paren(.message)
    )]
    NotAuthenticated {
        /// The server's fault string.
        message: String,
    },
    /// The user lacks a vCenter privilege.
    #[error(
        "vCenter user lacks privilege {privilege} on {object}: grant it (guest operations need VirtualMachine.GuestOperations.*)"
    )]
    NoPermission {
        /// The missing privilege id.
        privilege: String,
        /// The object it was needed on.
        object: String,
    },
    /// No VM has this name.
    #[error("no VM named {name} in vCenter inventory: check VM_NAME")]
    VmNotFound {
        /// The name looked up.
        name: String,
    },
    /// More than one VM has this name.
    #[error("{count} VMs are named {name} ({ids}): VM names must be unique; rename one")]
    VmAmbiguous {
        /// The name looked up.
        name: String,
        /// How many matched.
        count: usize,
        /// Their managed object ids.
        ids: String,
    },
    /// The VM is not powered on.
    #[error("VM {vm} is {state}, guest operations need it poweredOn: power it on first")]
    InvalidPowerState {
        /// The VM name.
        vm: String,
        /// Its power state.
        state: String,
    },
    /// VMware Tools is not running in the guest.
    #[error(
        "VMware Tools is not running in VM {vm} (toolsRunningStatus {status}): install/start open-vm-tools in the guest"
    )]
    ToolsNotRunning {
        /// The VM name.
        vm: String,
        /// Its guest.toolsRunningStatus.
        status: String,
    },
    /// Guest operations cannot be used on this VM now.
    #[error(
        "guest operations are unavailable on VM {vm}{}: VMware Tools must be running and ready in the guest; wait for it or restart open-vm-tools",
        paren(.message)
    )]
    GuestOperationsUnavailable {
        /// The VM name.
        vm: String,
        /// The server's fault string.
        message: String,
    },
    /// The guest rejected VM_USER_NAME/VM_PASSWORD.
    #[error("guest login failed for user {user} on VM {vm}: check VM_USER_NAME/VM_PASSWORD")]
    InvalidGuestLogin {
        /// The guest user.
        user: String,
        /// The VM name.
        vm: String,
    },
    /// A guest file or directory does not exist.
    #[error("file not found in VM {vm}{}", colon(.message))]
    FileNotFound {
        /// The VM name.
        vm: String,
        /// The server's fault string.
        message: String,
    },
    /// The guest user may not touch this file or process.
    #[error(
        "guest user {user} has no permission for this operation on VM {vm}{}: use a user that owns the path, or root",
        paren(.message)
    )]
    GuestPermissionDenied {
        /// The guest user.
        user: String,
        /// The VM name.
        vm: String,
        /// The server's fault string.
        message: String,
    },
    /// The guest process id is unknown.
    #[error("process not found in VM {vm}{}: the agent already exited", paren(.message))]
    GuestProcessNotFound {
        /// The VM name.
        vm: String,
        /// The server's fault string.
        message: String,
    },
    /// The server does not implement a call.
    #[error(
        "vCenter does not implement {method}{}: this server cannot run guest operations",
        paren(.message)
    )]
    MethodNotFound {
        /// The call.
        method: String,
        /// The server's fault string.
        message: String,
    },
    /// Any other vim25 fault, named by its type.
    #[error("vCenter fault {kind} in {method}{}", colon(.message))]
    OtherFault {
        /// The call.
        method: String,
        /// The vim25 fault type.
        kind: String,
        /// The server's fault string.
        message: String,
    },
    /// The server cannot run guest operations (too old, or an ESXi host whose license makes
    /// its API read-only); found before any guest operation.
    #[error("{server} cannot run this fault: {reason}")]
    Unsupported {
        /// What the server says it is, and where.
        server: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The server's license forbids the call (RestrictedVersion: the free vSphere
    /// Hypervisor's API is read-only).
    #[error(
        "the server refused {method}: its license does not allow this call (RestrictedVersion{}); the free vSphere Hypervisor license makes an ESXi host's API read-only: point GOVC_URL at the vCenter that manages the host, or license the host",
        colon(.message)
    )]
    LicenseRestricted {
        /// The call.
        method: String,
        /// The server's fault string.
        message: String,
    },
    /// The reply is not the expected document.
    #[error("unexpected reply from vCenter to {method}: {reason}")]
    Protocol {
        /// The call.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// A reply was larger than the client accepts.
    #[error("reply to {what} exceeds {limit} bytes: refusing to read it")]
    TooLarge {
        /// The call or transfer.
        what: String,
        /// The limit.
        limit: usize,
    },
    /// A /guestFile upload or download failed.
    #[error("file transfer ({what}) on VM {vm} failed: {reason}")]
    Transfer {
        /// The VM name.
        vm: String,
        /// Upload or download and the guest path.
        what: String,
        /// HTTP status or transport error.
        reason: String,
    },
}

/// `" (detail)"`, or nothing when the server gave no detail.
pub fn paren(detail: &str) -> String {
    let d = detail.trim();
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

/// Who and what a call was about, to word fault messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The call's method name.
    pub method: &'a str,
    /// The VM name, for guest operations.
    pub vm: &'a str,
    /// The guest user, for guest operations.
    pub guest_user: &'a str,
    /// The vCenter user, for Login.
    pub vc_user: &'a str,
}

impl VcError {
    /// Map a decoded fault to the error a user can act on.
    pub fn from_fault(f: Fault, cx: Context<'_>) -> Self {
        let vm = cx.vm.to_string();
        let message = f.message.clone();
        match f.kind.as_str() {
            "InvalidLogin" => Self::InvalidLogin {
                user: cx.vc_user.to_string(),
            },
            "NotAuthenticated" => Self::NotAuthenticated { message },
            "NoPermission" => Self::NoPermission {
                privilege: f.field("privilegeId").unwrap_or("?").to_string(),
                object: f
                    .detail
                    .as_ref()
                    .and_then(|d| d.child("object"))
                    .map(|o| o.text.clone())
                    .unwrap_or_default(),
            },
            "InvalidGuestLogin" => Self::InvalidGuestLogin {
                user: cx.guest_user.to_string(),
                vm,
            },
            "GuestOperationsUnavailable" | "GuestComponentsOutOfDate" | "ToolsUnavailable" => {
                Self::GuestOperationsUnavailable { vm, message }
            }
            "InvalidPowerState" => Self::InvalidPowerState {
                vm,
                state: f
                    .field("existingState")
                    .unwrap_or("not poweredOn")
                    .to_string(),
            },
            "FileNotFound" => Self::FileNotFound { vm, message },
            "GuestPermissionDenied" => Self::GuestPermissionDenied {
                user: cx.guest_user.to_string(),
                vm,
                message,
            },
            "GuestProcessNotFound" => Self::GuestProcessNotFound { vm, message },
            "RestrictedVersion" => Self::LicenseRestricted {
                method: cx.method.to_string(),
                message,
            },
            "MethodNotFound" | "NotImplemented" | "NotSupported" => Self::MethodNotFound {
                method: cx.method.to_string(),
                message,
            },
            _ => Self::OtherFault {
                method: cx.method.to_string(),
                kind: f.kind,
                message,
            },
        }
    }

    /// Map any decode failure of a reply to `cx.method`.
    pub fn from_decode(e: DecodeError, cx: Context<'_>) -> Self {
        match e {
            DecodeError::Fault(f) => Self::from_fault(*f, cx),
            other => Self::Protocol {
                method: cx.method.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// Map a transport error from reqwest, telling TLS problems apart.
    pub fn from_transport(url: &str, e: &reqwest::Error) -> Self {
        let reason = chain(e);
        let lower = reason.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            Self::Tls {
                url: url.to_string(),
                reason,
            }
        } else if e.is_connect() || e.is_builder() {
            Self::Unreachable {
                url: url.to_string(),
                reason,
            }
        } else {
            Self::ConnectionLost {
                url: url.to_string(),
                reason,
            }
        }
    }

    /// Whether a call that failed this way may be retried after vCenter comes back:
    /// always when the request never left (`Unreachable`); when it may have been carried
    /// out (`ConnectionLost`), only if repeating it changes nothing (`idempotent`).
    pub fn retryable(&self, idempotent: bool) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::ConnectionLost { .. } => idempotent,
            _ => false,
        }
    }
}

/// The full source chain of an error on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    let mut n = 0;
    while let Some(c) = cur {
        n += 1;
        if n > 8 {
            break;
        }
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
