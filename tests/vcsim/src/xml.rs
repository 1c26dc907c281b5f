//! A minimal XML tree for SOAP requests (local names, `xsi:type` kept apart), and
//! escaping for replies. Independent of the controller's parser on purpose: the
//! simulator must not share the client's mistakes.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// One element.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Local name.
    pub name: String,
    /// Local part of `xsi:type`.
    pub xsi_type: Option<String>,
    /// Other attributes by local name.
    pub attrs: Vec<(String, String)>,
    /// Children in order.
    pub children: Vec<Node>,
    /// Text directly inside.
    pub text: String,
}

impl Node {
    /// First child by local name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children by local name.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Trimmed text of a child.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// An attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn local(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.rsplit_once(':')
        .map_or_else(|| s.to_string(), |(_, l)| l.to_string())
}

fn start(e: &BytesStart<'_>) -> Result<Node, String> {
    let mut n = Node {
        name: local(e.name().as_ref()),
        ..Node::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let v = a.unescape_value().map_err(|e| e.to_string())?.into_owned();
        if key.ends_with(":type") {
            n.xsi_type = Some(local(v.as_bytes()));
        } else {
            n.attrs.push((local(key.as_bytes()), v));
        }
    }
    Ok(n)
}

/// Parse a document (depth-limited).
pub fn parse(bytes: &[u8]) -> Result<Node, String> {
    let mut r = Reader::from_reader(bytes);
    let mut stack: Vec<Node> = Vec::new();
    let mut root = None;
    loop {
        match r.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                if stack.len() > 64 {
                    return Err("too deep".into());
                }
                stack.push(start(&e)?);
            }
            Event::Empty(e) => {
                let n = start(&e)?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = root.or(Some(n)),
                }
            }
            Event::End(_) => {
                let n = stack.pop().ok_or("unbalanced")?;
                match stack.last_mut() {
                    Some(p) => p.children.push(n),
                    None => root = root.or(Some(n)),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().map_err(|e| e.to_string())?);
                }
            }
            Event::GeneralRef(g) => {
                if let Some(top) = stack.last_mut() {
                    let name = g.decode().map_err(|e| e.to_string())?;
                    let s = quick_xml::escape::unescape(&format!("&{name};"))
                        .map_err(|e| e.to_string())?
                        .into_owned();
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
        return Err("truncated document".into());
    }
    root.ok_or_else(|| "empty document".into())
}

/// Escape text and attribute values.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}
