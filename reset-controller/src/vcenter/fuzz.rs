//! Every reply decoder over one untrusted body: the entry point of the `soap_decode` fuzz
//! target (tests/fuzz) and of the fuzz regression tests. Not part of the client's API.
//!
//! Reply bodies come from the network (vCenter, or whatever answers at GOVC_URL), so each
//! decoder must return an error for any input, never panic, and stay linear in the input.

use reqwest::Url;

use super::collector::parse_retrieve;
use super::compat;
use super::error::{Context, VcError};
use super::guest_ops;
use super::inventory::{self, GuestManagers};
use super::service::parse_service_content;
use super::soap::{self, MoRef, returnval};
use super::transfer::{self, transfer_url};
use super::versions;
use super::xml;

/// Keep a decoder's result alive so the optimizer cannot drop the work.
fn keep<T>(value: T) {
    std::hint::black_box(value);
}

/// The method a reply claims to answer (`<XResponse>` gives `X`), so that decoding goes
/// past the method check; anything else is decoded as a reply to a fixed method.
fn claimed_method(body: &[u8]) -> String {
    xml::parse(body)
        .ok()
        .and_then(|root| {
            let payload = root.child("Body")?.children.first()?;
            Some(payload.name.strip_suffix("Response")?.to_string())
        })
        .unwrap_or_else(|| "RetrieveServiceContent".to_string())
}

/// Run `body` through everything that reads a vCenter reply: the envelope and fault
/// decoder with the fault-to-error mapping and its message, every typed reply decoder
/// (ServiceContent, RetrievePropertiesEx with VM matching, guest managers, container view,
/// licenses, HostSystem facts, processes, pid, strings, the /guestFile transfer replies and
/// their URL rewriting), and the vimServiceVersions.xml reader with the version choice. Returns whether the envelope decoded as a reply.
#[doc(hidden)]
pub fn decode_all(body: &[u8]) -> bool {
    keep(versions::parse(body).map(|v| match versions::choose(&v) {
        versions::Choice::Speak { version, .. } => soap::soap_action(&version),
        other => format!("{other:?}"),
    }));
    let method = claimed_method(body);
    let cx = Context {
        method: &method,
        vm: "web-01",
        guest_user: "root",
        vc_user: "administrator@vsphere.local",
    };
    let reply = match soap::decode_reply(body, &method) {
        Ok(reply) => reply,
        Err(e) => {
            keep(VcError::from_decode(e, cx).to_string());
            return false;
        }
    };

    keep(parse_service_content(&reply).map_err(|e| e.len()));
    keep(compat::parse_licenses(&reply));
    keep(transfer::parse_host(
        &reply,
        &MoRef::new("HostSystem", "host-1"),
    ));
    keep(returnval(&reply).ok().and_then(MoRef::from_element));

    let (objects, token) = parse_retrieve(&reply);
    keep(token);
    let mut names: Vec<String> = objects
        .iter()
        .take(8)
        .filter_map(|o| o.props.get("name").map(|e| e.text.trim().to_string()))
        .collect();
    names.push("web-01".to_string());
    for vm in inventory::match_vms(&objects, &names).into_values() {
        keep(
            vm.and_then(|vm| vm.check_ready())
                .map_err(|e| e.to_string()),
        );
    }
    let manager = |p: &str| {
        objects
            .first()
            .and_then(|o| o.props.get(p))
            .and_then(MoRef::from_element)
    };
    keep(GuestManagers {
        auth: manager("authManager"),
        file: manager("fileManager"),
        process: manager("processManager"),
    });

    for p in guest_ops::parse_processes(&reply) {
        keep(p.exited());
    }
    keep(guest_ops::parse_pid(&reply));
    let sdks = ["https://vc.example:8443/sdk", "https://[::1]/sdk"].map(|u| Url::parse(u).ok());
    let mut urls: Vec<String> = guest_ops::parse_string(&reply).into_iter().collect();
    if let Some((url, size)) = guest_ops::parse_transfer_from(&reply) {
        keep(size > 64 << 10);
        urls.push(url);
    }
    for raw in &urls {
        for sdk in sdks.iter().flatten() {
            keep(transfer_url(raw, sdk).map(String::from));
        }
    }
    true
}
