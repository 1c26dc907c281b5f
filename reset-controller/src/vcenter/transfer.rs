//! Where a /guestFile transfer goes, and whom it trusts.
//!
//! InitiateFileTransfer{To,From}Guest answers with a URL. An ESXi host puts `*` in it: the
//! host we called. A vCenter names the VM's ESXi host by its inventory name, which often
//! does not resolve from where the controller runs, and that host's certificate is
//! self-signed or VMCA-issued. As govmomi's guest `FileManager.TransferURL` does: look up the
//! VM's `runtime.host`, switch to the host's management IP (from
//! `config.virtualNicManagerInfo.netConfig`, when it has exactly one), and, with
//! GOVC_INSECURE=false, trust the host by the thumbprint vCenter records for it
//! (`summary.config.sslThumbprint`). What was learnt about a host is kept for the session.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

use super::collector::{parse_retrieve, retrieve_request};
use super::error::{Context, VcError};
use super::host_routes::Route;
use super::pinned::{Mismatch, Thumbprint, pinned_client};
use super::service::VIRTUAL_CENTER;
use super::session::Session;
use super::soap::MoRef;
use super::xml::Element;

/// Time allowed to open a connection to an ESXi host.
const HOST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rewrite a /guestFile URL whose host is `*` to the host (and port) we called.
pub fn transfer_url(raw: &str, sdk: &Url) -> Result<Url, String> {
    // `*` is not a valid host for the URL parser: substitute before parsing.
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("transfer URL {raw:?} has no scheme"))?;
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let authority = if is_star(raw) {
        match (sdk.host_str(), sdk.port()) {
            (Some(h), Some(p)) => format!("{}:{p}", bracket(h)),
            (Some(h), None) => bracket(h),
            _ => return Err("SDK URL has no host".into()),
        }
    } else {
        authority.to_string()
    };
    Url::parse(&format!("{scheme}://{authority}{tail}")).map_err(|e| format!("{raw:?}: {e}"))
}

/// Whether a transfer URL names `*` (the host we called) as its host.
pub fn is_star(raw: &str) -> bool {
    let rest = raw.split_once("://").map_or(raw, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host == "*" || host.starts_with("*:")
}

fn bracket(h: &str) -> String {
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// The management IPs of a host: the addresses of the selected vmknics of its `management`
/// netConfig (govmomi's `HostSystemManagementIPs`). `configs` are the VirtualNicManagerNetConfig
/// elements, whatever their tag.
pub fn management_ips<'a>(configs: impl Iterator<Item = &'a Element>) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for nc in configs.filter(|c| c.child_text("nicType").map(str::trim) == Some("management")) {
        let selected: Vec<&str> = nc
            .children_named("selectedVnic")
            .map(|s| s.text.trim())
            .collect();
        for vnic in nc.children_named("candidateVnic") {
            let key = vnic.child_text("key").map(str::trim).unwrap_or("");
            if !selected.contains(&key) {
                continue;
            }
            if let Some(ip) = vnic
                .path(&["spec", "ip", "ipAddress"])
                .and_then(|a| a.text.trim().parse().ok())
            {
                ips.push(ip);
            }
        }
    }
    ips
}

/// What vCenter says about the ESXi host behind a transfer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The HostSystem.
    pub moref: MoRef,
    /// Its inventory name.
    pub name: String,
    /// `summary.config.sslThumbprint`, if set.
    pub thumbprint: Option<String>,
    /// Its management IPs.
    pub management_ips: Vec<IpAddr>,
}

/// Decode the RetrievePropertiesEx reply about one HostSystem.
pub fn parse_host(reply: &Element, moref: &MoRef) -> HostFacts {
    let (objects, _) = parse_retrieve(reply);
    let props = objects.first().map(|o| &o.props);
    let text = |p: &str| {
        props
            .and_then(|m| m.get(p))
            .map(|v| v.text.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    HostFacts {
        moref: moref.clone(),
        name: text("name").unwrap_or_default(),
        thumbprint: text("summary.config.sslThumbprint"),
        management_ips: props
            .and_then(|m| m.get("config.virtualNicManagerInfo.netConfig"))
            .map(|v| management_ips(v.children.iter()))
            .unwrap_or_default(),
    }
}

/// Where one transfer goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL to PUT or GET.
    pub url: Url,
    /// The client to use (the vCenter client, or one pinned to the host's thumbprint).
    pub client: reqwest::Client,
    /// Set when a pinned client refused a certificate.
    pub mismatch: Option<Mismatch>,
}

/// Where the transfer URL `raw`, returned by `method` for `vm`, goes and whom it trusts.
pub async fn target(
    session: &Session,
    vm: &MoRef,
    raw: &str,
    method: &str,
) -> Result<Target, VcError> {
    let t = session.transport();
    let bad = |reason: String| VcError::Protocol {
        method: method.to_string(),
        reason: format!("bad transfer URL: {reason}"),
    };
    let mut url = transfer_url(raw, t.sdk()).map_err(bad)?;
    let main = Target {
        url: url.clone(),
        client: t.http().clone(),
        mismatch: None,
    };
    if is_star(raw) || session.content().about.api_type != VIRTUAL_CENTER {
        return Ok(main);
    }
    let key = url.authority().to_string();
    let route = match t.host_clients().get(&key) {
        Some(r) => r,
        None => {
            let Some(route) = resolve(session, vm, &url).await? else {
                return Ok(main);
            };
            t.host_clients().put(key, route.clone());
            route
        }
    };
    if let Some(ip) = route.ip {
        url.set_ip_host(ip)
            .map_err(|()| bad(format!("cannot use {ip} as its host")))?;
    }
    Ok(match route.pinned {
        Some((client, mismatch)) => Target {
            url,
            client,
            mismatch: Some(mismatch),
        },
        None => Target { url, ..main },
    })
}

/// Learn the route to the VM's host from vCenter; `None` if the VM has no `runtime.host`.
async fn resolve(session: &Session, vm: &MoRef, url: &Url) -> Result<Option<Route>, VcError> {
    let pc = &session.content().property_collector;
    let reply = session
        .call(
            retrieve_request(pc, vm, "VirtualMachine", &["runtime.host"], false),
            Context::default(),
        )
        .await?;
    let (objects, _) = parse_retrieve(&reply);
    let Some(host) = objects
        .first()
        .and_then(|o| o.props.get("runtime.host"))
        .and_then(MoRef::from_element)
    else {
        tracing::debug!(vm = %vm.value, "the VM has no runtime.host: transfer URL used as given");
        return Ok(None);
    };
    let name = url.host_str().unwrap_or("");
    let is_name = name.trim_matches(['[', ']']).parse::<IpAddr>().is_err();
    let mut paths = vec!["name", "summary.config.sslThumbprint"];
    if is_name {
        paths.push("config.virtualNicManagerInfo.netConfig");
    }
    let reply = session
        .call(
            retrieve_request(pc, &host, "HostSystem", &paths, false),
            Context::default(),
        )
        .await?;
    let facts = parse_host(&reply, &host);
    Ok(Some(route(session.transport().insecure(), name, &facts)))
}

fn route(insecure: bool, name: &str, facts: &HostFacts) -> Route {
    let label = format!("{name} (HostSystem {})", facts.moref.value);
    let ip = match facts.management_ips.as_slice() {
        [ip] => Some(*ip),
        [] => None,
        many => {
            tracing::debug!(host = %label, ips = ?many, "several management IPs: keeping the host name");
            None
        }
    };
    let pinned = match (&facts.thumbprint, insecure) {
        (Some(tp), false) => match Thumbprint::parse(tp) {
            Some(pin) => match pinned_client(pin, &label, HOST_CONNECT_TIMEOUT) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(host = %label, error = %e, "cannot build a pinned client: using the system roots");
                    None
                }
            },
            None => {
                tracing::warn!(host = %label, thumbprint = %tp, "unrecognised thumbprint: using the system roots");
                None
            }
        },
        _ => None,
    };
    // Verified against the system roots, the certificate must match the name in the URL: keep
    // the name (a thumbprint, or GOVC_INSECURE, does not look at names).
    let ip = ip.filter(|_| insecure || pinned.is_some());
    tracing::debug!(
        host = %label,
        via = %ip.map_or_else(|| name.to_string(), |ip| ip.to_string()),
        pinned = pinned.is_some(),
        "guest file transfers go to the VM's ESXi host"
    );
    Route { ip, pinned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_host_is_replaced_with_called_host_and_port() {
        let sdk = super::super::client::sdk_url("https://127.0.0.1:8443/sdk").unwrap();
        let u = transfer_url("https://*:443/guestFile?id=1&token=abc", &sdk).unwrap();
        assert_eq!(
            u.as_str(),
            "https://127.0.0.1:8443/guestFile?id=1&token=abc"
        );
        let u = transfer_url("https://*/guestFile?id=1", &sdk).unwrap();
        assert_eq!(u.as_str(), "https://127.0.0.1:8443/guestFile?id=1");
        let u = transfer_url("https://esx1.lab:443/guestFile?id=2", &sdk).unwrap();
        assert_eq!(u.host_str(), Some("esx1.lab"));
        let v6 = super::super::client::sdk_url("https://[::1]:9/sdk").unwrap();
        let u = transfer_url("https://*/guestFile?x", &v6).unwrap();
        assert_eq!(u.as_str(), "https://[::1]:9/guestFile?x");
        assert!(transfer_url("no-scheme", &sdk).is_err());
        assert!(is_star("https://*/guestFile") && is_star("https://*:443/x"));
        assert!(!is_star("https://esx1.lab/guestFile?a=*"));
    }

    #[test]
    fn route_to_a_host_as_govmomi_does() {
        let facts = |tp: Option<&str>, ips: &[&str]| HostFacts {
            moref: MoRef::new("HostSystem", "host-12"),
            name: "esx-12.lab".into(),
            thumbprint: tp.map(str::to_string),
            management_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        };
        let tp = "19:32:16:04:8B:77:FB:91:5E:D2:A6:87:6D:A5:5A:08:0F:C9:BA:F5";
        let ip = |r: &Route| r.ip.map(|i| i.to_string());
        // Verified by thumbprint: its one management IP.
        let r = route(false, "esx-12.lab", &facts(Some(tp), &["198.18.0.10"]));
        assert_eq!(ip(&r).as_deref(), Some("198.18.0.10"));
        assert!(r.pinned.is_some());
        // GOVC_INSECURE: the IP, no pin needed.
        let r = route(true, "esx-12.lab", &facts(Some(tp), &["198.18.0.10"]));
        assert_eq!(ip(&r).as_deref(), Some("198.18.0.10"));
        assert!(r.pinned.is_none());
        // No thumbprint: the system roots check the name, so the name stays.
        let r = route(false, "esx-12.lab", &facts(None, &["198.18.0.10"]));
        assert!(r.ip.is_none() && r.pinned.is_none());
        // Several management IPs: which one is reachable is unknown, the name stays.
        let r = route(
            false,
            "esx-12.lab",
            &facts(Some(tp), &["198.18.0.10", "198.18.1.10"]),
        );
        assert!(r.ip.is_none() && r.pinned.is_some());
        // An unreadable thumbprint is not a pin.
        let r = route(
            false,
            "esx-12.lab",
            &facts(Some("not-hex"), &["198.18.0.10"]),
        );
        assert!(r.ip.is_none() && r.pinned.is_none());
    }
}
