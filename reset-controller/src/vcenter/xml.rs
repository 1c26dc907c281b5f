//! A tiny, bounded XML tree for SOAP replies.
//!
//! vim25 replies are small documents; parsing them into a tree keyed by local names
//! (namespace prefixes dropped) makes decoding tolerant of prefix choices and of
//! `xsi:type` being present or absent. Hostile input is bounded by depth and by
//! element count; nothing here panics.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Deepest nesting accepted; vim25 replies nest a dozen levels at most.
const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
const MAX_ELEMENTS: usize = 500_000;

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The bytes are not well-formed XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// The document nests deeper than [`MAX_DEPTH`] or has more than [`MAX_ELEMENTS`].
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

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

fn start(e: &BytesStart<'_>) -> Result<Element, XmlError> {
    let mut el = Element {
        name: local(e.name().as_ref()),
        ..Element::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::Malformed(err.to_string()))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let value = a
            .unescape_value()
            .map_err(|err| XmlError::Malformed(err.to_string()))?
            .into_owned();
        if local(key.as_bytes()) == "type" && key.contains(':') {
            el.xsi_type = Some(local(value.as_bytes()));
        } else {
            el.attrs.push((local(key.as_bytes()), value));
        }
    }
    Ok(el)
}

/// Parse a whole document and return its root element.
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut root = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(e) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                stack.push(start(&e)?);
            }
            Event::Empty(e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooLarge);
                }
                let el = start(&e)?;
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
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                    let s = quick_xml::escape::unescape(&s)
                        .map_err(|e| XmlError::Malformed(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = r.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                    let entity = format!("&{name};");
                    let s = quick_xml::escape::unescape(&entity)
                        .map_err(|e| XmlError::Malformed(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
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
    }

    #[test]
    fn rejects_hostile_documents() {
        assert!(parse(b"").is_err());
        assert!(parse(b"<a><b></a>").is_err());
        assert!(parse(b"<a>").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(matches!(parse(deep.as_bytes()), Err(XmlError::TooLarge)));
        assert!(parse(b"\xff\xfe<<<").is_err());
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
