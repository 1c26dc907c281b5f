//! Just enough Rust lexing for the module graph: comments and literals blanked (line
//! breaks kept), `#[cfg(test)]` items dropped, and the `crate::` / `super::` paths read out
//! of `use` trees.

/// The text with comments blanked and string and char literals emptied; line breaks kept,
/// so line numbers still hold.
pub fn code_only(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if at(0) == '"' || (at(0) == 'r' && matches!(at(1), '"' | '#')) {
            i = skip_string(&c, i, &mut out);
        } else if at(0) == '\'' && (at(1) == '\\' || at(2) == '\'') {
            // A char literal ('x', '\n', '\''); a lifetime ('a) is kept.
            i += if at(1) == '\\' { 3 } else { 1 };
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Skips the string literal at `i` ("...", r"...", r#"..."#), writing `""` and its line breaks.
fn skip_string(c: &[char], mut i: usize, out: &mut String) -> usize {
    let raw = c[i] == 'r';
    let mut hashes = 0;
    if raw {
        i += 1;
        while c.get(i) == Some(&'#') {
            hashes += 1;
            i += 1;
        }
    }
    if c.get(i) != Some(&'"') {
        // `r#ident` (a raw identifier) or an `r` that starts a word.
        out.push('r');
        return i - hashes;
    }
    i += 1;
    while i < c.len() {
        match c[i] {
            '\\' if !raw => i += 2,
            '"' if (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) => {
                i += 1 + hashes;
                break;
            }
            ch => {
                if ch == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
        }
    }
    out.push_str("\"\"");
    i
}

/// `code` without the items marked `#[cfg(test)]` (each blanked up to its `;` or its
/// balanced `{...}`; line breaks kept).
pub fn without_tests(code: &str) -> String {
    let mut out = code.to_string();
    let mut from = 0;
    while let Some(at) = out[from..].find("#[cfg(test)]").map(|p| p + from) {
        let bytes = out.as_bytes();
        let mut i = at;
        let mut depth = 0usize;
        let end = loop {
            match bytes.get(i) {
                None => break i,
                Some(b'{') => depth += 1,
                Some(b'}') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break i + 1;
                    }
                }
                Some(b';') if depth == 0 => break i + 1,
                _ => {}
            }
            i += 1;
        };
        let blank: String = out[at..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..end, &blank);
        from = at + 1;
    }
    out
}

/// Every `crate::...` and `super::...` path in code, expanded from `{...}` trees, with the
/// line it starts on.
pub fn paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (n, line_start) in line_starts(code).into_iter().enumerate() {
        let line_end = code[line_start..]
            .find('\n')
            .map_or(code.len(), |e| line_start + e);
        let mut at = line_start;
        while at < line_end
            && let Some(p) = find_path_start(code, at, line_end)
        {
            let (mut trees, end) = tree(code, p);
            out.extend(trees.drain(..).map(|t| (n + 1, t)));
            at = end.max(p + 1);
        }
    }
    out
}

fn line_starts(code: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(code.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i <= code.len())
        .collect()
}

/// The next `crate::` or `super::` in `code[from..to]` that starts a path (not the end of a
/// longer name such as `my_crate::`).
fn find_path_start(code: &str, from: usize, to: usize) -> Option<usize> {
    let hay = &code[from..to];
    let mut best: Option<usize> = None;
    for key in ["crate::", "super::"] {
        let mut start = 0;
        while let Some(p) = hay[start..].find(key).map(|p| p + start) {
            let before = hay[..p].chars().next_back();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                best = Some(best.map_or(p, |b: usize| b.min(p)));
                break;
            }
            start = p + key.len();
        }
    }
    best.map(|p| p + from)
}

/// The path tree starting at `at` (`a::b::{c, d::e}`), as its full paths, and where it ends.
fn tree(code: &str, at: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut prefix: Vec<String> = Vec::new();
    let mut i = at;
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            prefix.push(code[start..i].to_string());
        }
        if code[i..].starts_with("::") {
            i += 2;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if b.get(i) == Some(&b'{') {
                let mut out = Vec::new();
                i += 1;
                loop {
                    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                        i += 1;
                    }
                    match b.get(i) {
                        None => return (out, i),
                        Some(b'}') => return (out, i + 1),
                        Some(_) => {
                            let (subs, end) = tree(code, i);
                            out.extend(subs.into_iter().map(|s| [prefix.clone(), s].concat()));
                            // Past anything the sub-tree did not take (`self`, `*`, `as x`).
                            i = end.max(i + 1);
                            while i < b.len() && !matches!(b[i], b',' | b'}') {
                                i += 1;
                            }
                        }
                    }
                }
            }
            if i > start {
                continue;
            }
        }
        return (vec![prefix], i);
    }
}
