//! SOAP dispatch: parse the envelope, check the session, route by method name.

use crate::guest;
use crate::model::Sim;
use crate::objects;
use crate::soap::{self, Fault, faults, leaf, moref};
use crate::xml::{self, Node};

/// What the HTTP layer sends back.
#[derive(Debug)]
pub struct Reply {
    /// 200 or 500.
    pub status: u16,
    /// The envelope.
    pub body: String,
    /// A new session key to set as `vmware_soap_session`.
    pub new_session: Option<String>,
    /// The session ended.
    pub logged_out: bool,
    /// The vim25 method called, when the envelope named one.
    pub method: String,
}

fn ok(method: &str, inner: &str) -> Reply {
    Reply {
        status: 200,
        body: soap::reply(method, inner),
        new_session: None,
        logged_out: false,
        method: method.to_string(),
    }
}

fn fault(f: &Fault) -> Reply {
    Reply {
        status: 500,
        body: f.envelope(),
        new_session: None,
        logged_out: false,
        method: String::new(),
    }
}

/// Handle one SOAP request; `session` is the caller's cookie value, if any.
pub async fn handle(sim: &Sim, scheme: &str, session: Option<&str>, body: &[u8]) -> Reply {
    let root = match xml::parse(body) {
        Ok(r) => r,
        Err(e) => {
            return fault(&faults::invalid_request(&format!(
                "malformed SOAP request: {e}"
            )));
        }
    };
    let Some(call) = root.child("Body").and_then(|b| b.children.first()) else {
        return fault(&faults::invalid_request("SOAP Body is empty"));
    };
    let method = call.name.as_str();
    let this = call.child("_this");
    let this_kind = this.and_then(|t| t.attr("type")).unwrap_or("");
    let this_id = this.map(|t| t.text.trim()).unwrap_or("");
    let authed = session.is_some_and(|s| sim.has_session(s));
    tracing::debug!(method, this = this_id, authed, "call");
    if !authed && !matches!(method, "RetrieveServiceContent" | "Login") {
        let mut r = fault(&faults::not_authenticated(this_kind, this_id));
        r.method = method.to_string();
        return r;
    }
    let mut reply = match route(sim, scheme, session, method, this_kind, this_id, call).await {
        Ok(r) => r,
        Err(f) => {
            tracing::debug!(method, fault = f.kind, "fault");
            fault(&f)
        }
    };
    reply.method = method.to_string();
    reply
}

async fn route(
    sim: &Sim,
    scheme: &str,
    session: Option<&str>,
    method: &str,
    kind: &str,
    id: &str,
    call: &Node,
) -> Result<Reply, Fault> {
    Ok(match method {
        "RetrieveServiceContent" => ok(
            method,
            &format!("<returnval>{}</returnval>", objects::service_content(sim)),
        ),
        "Login" => {
            let user = call.text_of("userName").unwrap_or("");
            let password = call.child("password").map_or("", |p| p.text.as_str());
            let key = sim.login(user, password)?;
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            let inner = format!(
                "<returnval>{}{}{}{}{}{}{}{}</returnval>",
                leaf("key", &key),
                leaf("userName", user),
                leaf("fullName", user),
                leaf("loginTime", &now),
                leaf("lastActiveTime", &now),
                leaf("locale", "en"),
                leaf("messageLocale", "en"),
                leaf("extensionSession", "false"),
            );
            let mut r = ok(method, &inner);
            r.new_session = Some(key);
            r
        }
        "Logout" => {
            if let Some(s) = session {
                sim.logout(s);
            }
            let mut r = ok(method, "");
            r.logged_out = true;
            r
        }
        "CreateContainerView" => {
            let container = call.child("container").map(|c| c.text.trim()).unwrap_or("");
            if container != objects::ROOT_FOLDER {
                return Err(faults::managed_object_not_found("Folder", container));
            }
            let types: Vec<&str> = call.all("type").map(|t| t.text.trim()).collect();
            if !types.iter().all(|t| *t == "VirtualMachine") {
                return Err(faults::invalid_argument("type"));
            }
            ok(
                method,
                &moref("returnval", "ContainerView", &sim.new_view()),
            )
        }
        "DestroyView" => {
            if !sim.destroy_view(id) {
                return Err(faults::managed_object_not_found(kind, id));
            }
            ok(method, "")
        }
        "RetrievePropertiesEx" => {
            let objs = objects::retrieve(sim, call, "objects")?;
            ok(method, &page(sim, objs))
        }
        "RetrieveProperties" => ok(method, &objects::retrieve(sim, call, "returnval")?.concat()),
        "ContinueRetrievePropertiesEx" => {
            let token = call.text_of("token").unwrap_or("");
            let rest = sim
                .take_page(token)
                .ok_or_else(|| faults::invalid_argument("token"))?;
            ok(method, &page(sim, rest))
        }
        "Fetch" => ok(method, &objects::fetch(sim, kind, id, call)?),
        m => match guest::manager_of(m) {
            Some(mgr) if mgr == kind => {
                let cx = guest::check(sim, call)?;
                ok(method, &guest::call(sim, scheme, method, cx).await?)
            }
            _ => return Err(faults::method_not_found(&format!("{kind}:{id}"), m)),
        },
    })
}

/// A RetrieveResult of at most the profile's page size (vCenter pages large results too):
/// the rest waits behind a token for ContinueRetrievePropertiesEx. No objects, no returnval.
fn page(sim: &Sim, mut objs: Vec<String>) -> String {
    if objs.is_empty() {
        return String::new();
    }
    let size = sim.profile.page_size();
    let token = (objs.len() > size).then(|| sim.add_page(objs.split_off(size)));
    let token = token.map(|t| leaf("token", &t)).unwrap_or_default();
    format!("<returnval>{token}{}</returnval>", objs.concat())
}

/// The session key in a Cookie header (`vmware_soap_session="KEY"`, quotes optional).
pub fn session_from_cookie(header: &str) -> Option<String> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == "vmware_soap_session").then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SimConfig, VmSpec};

    fn sim() -> Sim {
        Sim::new(SimConfig {
            vms: vec![
                VmSpec {
                    name: "web-01".into(),
                    netns: None,
                    powered_on: true,
                    tools_running: true,
                },
                VmSpec {
                    name: "off-01".into(),
                    netns: None,
                    powered_on: false,
                    tools_running: true,
                },
            ],
            guest_users: vec![("root".into(), "pw".into())],
            vc_user: Some(("admin".into(), "vcpw".into())),
            tmp_dir: None,
            state_dir: None,
        })
    }

    fn env(body: &str) -> Vec<u8> {
        format!(
            r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"#
        )
        .into_bytes()
    }

    fn login(s: &Sim) -> String {
        let r = block_on(handle(
            s,
            "https",
            None,
            &env(
                r#"<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>admin</userName><password>vcpw</password></Login>"#,
            ),
        ));
        assert_eq!(r.status, 200, "{}", r.body);
        r.new_session.unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn cookie_forms() {
        assert_eq!(
            session_from_cookie(r#"vmware_soap_session="abc"; Path=/; HttpOnly"#).as_deref(),
            Some("abc")
        );
        assert_eq!(
            session_from_cookie("x=1; vmware_soap_session=def").as_deref(),
            Some("def")
        );
        assert_eq!(session_from_cookie("x=1"), None);
    }

    #[test]
    fn calls_without_a_session_are_not_authenticated() {
        let s = sim();
        let r = block_on(handle(
            &s,
            "https",
            Some("bogus"),
            &env(
                r#"<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this></CreateContainerView>"#,
            ),
        ));
        assert_eq!(r.status, 500);
        assert!(r.body.contains(r#"<NotAuthenticatedFault xmlns="urn:vim25" xsi:type="NotAuthenticated"><object type="ViewManager">ViewManager</object><privilegeId>System.View</privilegeId>"#), "{}", r.body);
        let r = block_on(handle(
            &s,
            "https",
            None,
            &env(
                r#"<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this><userName>admin</userName><password>no</password></Login>"#,
            ),
        ));
        assert!(r.body.contains(r#"xsi:type="InvalidLogin""#) && r.new_session.is_none());
    }

    #[test]
    fn view_and_properties_then_guest_faults() {
        let s = sim();
        let key = login(&s);
        let r = block_on(handle(
            &s,
            "https",
            Some(&key),
            &env(
                r#"<CreateContainerView xmlns="urn:vim25"><_this type="ViewManager">ViewManager</_this><container type="Folder">group-d1</container><type>VirtualMachine</type><recursive>true</recursive></CreateContainerView>"#,
            ),
        ));
        let view = xml::parse(r.body.as_bytes()).unwrap();
        let id = view.child("Body").unwrap().children[0]
            .child("returnval")
            .unwrap()
            .text
            .clone();
        let req = format!(
            r#"<RetrievePropertiesEx xmlns="urn:vim25"><_this type="PropertyCollector">propertyCollector</_this><specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet><pathSet>runtime.powerState</pathSet></propSet><objectSet><obj type="ContainerView">{id}</obj><skip>true</skip><selectSet xsi:type="TraversalSpec"><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options/></RetrievePropertiesEx>"#
        );
        let r = block_on(handle(&s, "https", Some(&key), &env(&req)));
        assert!(r.body.contains(r#"<obj type="VirtualMachine">vm-2</obj><propSet><name>name</name><val xsi:type="xsd:string">off-01</val></propSet><propSet><name>runtime.powerState</name><val xsi:type="VirtualMachinePowerState">poweredOff</val></propSet>"#), "{}", r.body);
        let guest = |vm: &str, pw: &str| {
            format!(
                r#"<ValidateCredentialsInGuest xmlns="urn:vim25"><_this type="GuestAuthManager">guestOperationsAuthManager</_this><vm type="VirtualMachine">{vm}</vm><auth xsi:type="NamePasswordAuthentication"><interactiveSession>false</interactiveSession><username>root</username><password>{pw}</password></auth></ValidateCredentialsInGuest>"#
            )
        };
        let r = block_on(handle(&s, "https", Some(&key), &env(&guest("vm-2", "pw"))));
        assert!(
            r.body.contains("<existingState>poweredOff</existingState>"),
            "{}",
            r.body
        );
        let r = block_on(handle(&s, "https", Some(&key), &env(&guest("vm-1", "bad"))));
        assert!(
            r.body.contains(
                r#"<InvalidGuestLoginFault xmlns="urn:vim25" xsi:type="InvalidGuestLogin">"#
            ),
            "{}",
            r.body
        );
        let r = block_on(handle(&s, "https", Some(&key), &env(&guest("vm-1", "pw"))));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains(r#"<ValidateCredentialsInGuestResponse xmlns="urn:vim25"></ValidateCredentialsInGuestResponse>"#));
    }
}
