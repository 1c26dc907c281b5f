//! What the test callers (src/bin/caller.rs, src/bin/pooled-caller.rs) share: their URL
//! reading and their percentiles.
use std::net::SocketAddr;

/// `http://HOST[:PORT][/PATH]` (IPv6 as `[ADDR]`): (address, Host header, path).
pub fn parse_url(url: &str) -> anyhow::Result<(SocketAddr, String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let has_port = if hostport.starts_with('[') {
        hostport.contains("]:")
    } else {
        hostport.contains(':')
    };
    let with_port = if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    let addr: SocketAddr = with_port.parse()?;
    Ok((addr, hostport.to_owned(), path))
}

/// The `p` quantile (nearest rank) of microsecond samples, in ms; 0 with no sample.
pub fn pct_ms(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i] as f64 / 1000.0
}
