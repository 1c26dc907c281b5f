//! The PropertyCollector's requests and replies, as pure functions: CreateContainerView and
//! RetrievePropertiesEx encoded, their ObjectContent decoded. No I/O and no session, so that
//! every module that reads properties (inventory, compat, transfer) may import it.

use std::collections::BTreeMap;

use super::soap::{MoRef, Request, leaf};
use super::xml::{self, Element};

/// One object of a RetrievePropertiesEx result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContent {
    /// The object.
    pub obj: MoRef,
    /// Property path to value element.
    pub props: BTreeMap<String, Element>,
}

/// Encode CreateContainerView(root, [type], recursive).
pub fn create_container_view_request(view_manager: &MoRef, root: &MoRef, kind: &str) -> Request {
    Request::new("CreateContainerView", view_manager)
        .moref("container", root)
        .text("type", kind)
        .text("recursive", "true")
}

/// Encode RetrievePropertiesEx of `paths` on objects of `kind`, either directly on
/// `obj` or (with `through_view`) on every object in the container view `obj`.
pub fn retrieve_request(
    pc: &MoRef,
    obj: &MoRef,
    kind: &str,
    paths: &[&str],
    through_view: bool,
) -> Request {
    let mut spec = format!("<specSet><propSet>{}", leaf("type", kind));
    for p in paths {
        spec.push_str(&leaf("pathSet", p));
    }
    spec.push_str("</propSet><objectSet>");
    spec.push_str(&format!(
        r#"<obj type="{}">{}</obj>"#,
        xml::escape(&obj.kind),
        xml::escape(&obj.value)
    ));
    if through_view {
        spec.push_str(concat!(
            "<skip>true</skip>",
            r#"<selectSet xsi:type="TraversalSpec"><type>ContainerView</type>"#,
            "<path>view</path><skip>false</skip></selectSet>"
        ));
    } else {
        spec.push_str("<skip>false</skip>");
    }
    spec.push_str("</objectSet></specSet><options></options>");
    Request::new("RetrievePropertiesEx", pc).raw(&spec)
}

/// Decode a RetrievePropertiesEx / ContinueRetrievePropertiesEx reply: objects and
/// the continuation token. No `returnval` means no objects.
pub fn parse_retrieve(reply: &Element) -> (Vec<ObjectContent>, Option<String>) {
    let Some(rv) = reply.child("returnval") else {
        return (Vec::new(), None);
    };
    let objects = rv
        .children_named("objects")
        .filter_map(|o| {
            let obj = MoRef::from_element(o.child("obj")?)?;
            let props = o
                .children_named("propSet")
                .filter_map(|p| Some((p.child_text("name")?.to_string(), p.child("val")?.clone())))
                .collect();
            Some(ObjectContent { obj, props })
        })
        .collect();
    let token = rv
        .child_text("token")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    (objects, token)
}
