//! A tiny, bounded XML tree for SOAP replies.
//!
//! vim25 replies are small documents; parsing them into a tree keyed by local names
//! (namespace prefixes dropped) makes decoding tolerant of prefix choices and of
//! `xsi:type` being present or absent. Hostile input is bounded by depth, by node count and
//! by attributes per element, so parsing stays linear in the input; nothing here panics.

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// Deepest nesting accepted; vim25 replies nest a dozen levels at most.
const MAX_DEPTH: usize = 64;
/// Most nodes (elements plus attributes) accepted in one document.
const MAX_NODES: usize = 500_000;
/// Most attributes (namespace declarations included) accepted on one element; vim25
/// elements carry a handful. quick-xml checks each attribute against the ones before it
/// for duplicates, so without this bound one element with n attributes costs n^2.
const MAX_ATTRIBUTES: usize = 64;

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The bytes are not well-formed XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// The document nests deeper than [`MAX_DEPTH`], has more than [`MAX_NODES`], or an
    /// element has more than [`MAX_ATTRIBUTES`].
    #[error("XML document too deep or too large")]
    TooLarge,
    /// The document has no root element.
    #[error("empty XML document")]
    Empty,
}

/// One element: local name, `xsi:type` (local part), other attributes, children, text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name, without namespace prefix.
    pub name: String,
    /// Local part of `xsi:type`, if present (`xsd:string` gives `string`).
    pub xsi_type: Option<String>,
    /// Attributes other than namespace declarations and `xsi:type`, by local name.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// Concatenated, unescaped text content directly inside this element.
    pub text: String,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first child with this local name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// An attribute by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Follow a path of local names through first children.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |e, n| e.child(n))
    }
}

fn local(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => name.to_string(),
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Read a start tag; `nodes` counts it and its attributes against [`MAX_NODES`].
fn start(e: &BytesStart<'_>, version: XmlVersion, nodes: &mut usize) -> Result<Element, XmlError> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(XmlError::TooLarge);
    }
    let mut el = Element {
        name: local(e.name().as_ref()),
        ..Element::default()
    };
    for (i, a) in e.attributes().enumerate() {
        *nodes += 1;
        if i >= MAX_ATTRIBUTES || *nodes > MAX_NODES {
            return Err(XmlError::TooLarge);
        }
        let a = a.map_err(malformed)?;
        let key: &str = a.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = a.normalized_value(version).map_err(malformed)?;
        if local(key) == "type" && key.contains(':') {
            el.xsi_type = Some(local(&value));
        } else {
            el.attrs.push((local(key), value.into_owned()));
        }
    }
    Ok(el)
}

/// The text of `&name;`: a character reference or one of the five predefined entities (a
/// DTD could define others; vim25 replies have none, and they are refused).
fn reference(r: &BytesRef<'_>) -> Result<String, XmlError> {
    if let Some(c) = r.resolve_char_ref().map_err(malformed)? {
        return Ok(c.to_string());
    }
    quick_xml::escape::resolve_predefined_entity(r)
        .map(str::to_string)
        .ok_or_else(|| malformed(format_args!("unknown entity &{};", &**r)))
}

/// Parse a whole document and return its root element.
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Element> = Vec::new();
    let mut nodes = 0usize;
    let mut version = XmlVersion::Implicit1_0;
    let mut root = None;
    loop {
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Decl(d) => version = d.xml_version().map_err(malformed)?,
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooLarge);
                }
                stack.push(start(&e, version, &mut nodes)?);
            }
            Event::Empty(e) => {
                let el = start(&e, version, &mut nodes)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = root.or(Some(el)),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = root.or(Some(el)),
                }
            }
            // Text events never hold references (those are GeneralRef events): only line
            // ends are normalized.
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml_content(version));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&reference(&r)?);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.xml_content(version));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(
            "document ends inside an element".into(),
        ));
    }
    root.ok_or(XmlError::Empty)
}

/// Escape text for element content and attribute values.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes_types_and_entities() {
        let doc = br#"<?xml version="1.0"?><a:Root xmlns:a="x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><val xsi:type="xsd:string">a &amp; b&lt;</val><obj type="VirtualMachine">vm-1</obj><e/></a:Root>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "Root");
        let val = root.child("val").unwrap();
        assert_eq!(val.xsi_type.as_deref(), Some("string"));
        assert_eq!(val.text, "a & b<");
        assert_eq!(
            root.child("obj").unwrap().attr("type"),
            Some("VirtualMachine")
        );
        assert!(root.child("e").is_some());
        let root = parse(b"<a>x&#x41;&#66;\r\ny<![CDATA[<z>]]></a>").unwrap();
        assert_eq!(root.text, "xAB\ny<z>");
        assert!(parse(b"<a>&nbsp;</a>").is_err());
        assert!(parse(b"<a>&#0;</a>").is_err());
    }

    #[test]
    fn rejects_hostile_documents() {
        assert!(parse(b"").is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(matches!(parse(deep.as_bytes()), Err(XmlError::TooLarge)));
        assert!(parse(b"\xff\xfe<<<").is_err());
        let attrs: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"\""))
            .collect();
        assert!(matches!(
            parse(format!("<a{attrs}/>").as_bytes()),
            Err(XmlError::TooLarge)
        ));
        let attrs: String = (1..MAX_ATTRIBUTES).map(|i| format!(" a{i}=\"\"")).collect();
        assert_eq!(
            parse(format!("<a{attrs}/>").as_bytes())
                .unwrap()
                .attrs
                .len(),
            MAX_ATTRIBUTES - 1
        );
        let many = "<a/>".repeat(MAX_NODES);
        assert!(matches!(
            parse(format!("<r>{many}</r>").as_bytes()),
            Err(XmlError::TooLarge)
        ));
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
