//! Which client-supplied stream URIs the operator allows (`--allow-uri PATTERN`).
//!
//! Patterns are globs where `*` matches any run of characters (`rtsp://cams.example/*`).
//! Only network schemes are ever allowed, whatever the patterns say: a client must not make
//! the server read its files (`file://`, plain paths) or run a GStreamer pipeline. Link-local
//! hosts (169.254.0.0/16, fe80::/10: cloud metadata services) are refused too.

const NETWORK_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "srt"];

#[derive(Debug, Clone, Default)]
pub struct UriAllowlist {
    patterns: Vec<String>,
}

impl UriAllowlist {
    pub fn new(patterns: Vec<String>) -> Self {
        Self { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `Ok(())`, or the reason the URI is refused.
    pub fn check(&self, uri: &str) -> Result<(), String> {
        let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme {
            Some(s) if NETWORK_SCHEMES.contains(&s.as_str()) => {}
            _ => return Err(format!("only network URIs ({}) can be requested", NETWORK_SCHEMES.join(", "))),
        }
        if uri.chars().any(char::is_control) || uri.contains(' ') {
            return Err("the URI contains whitespace or control characters".into());
        }
        if uri.contains(['"', '\\']) {
            return Err("the URI contains quotes or backslashes, which a URI must percent-encode".into());
        }
        if is_link_local_host(uri) {
            return Err("link-local and cloud metadata addresses are never allowed".into());
        }
        if self.patterns.iter().any(|p| glob_match(p, uri)) {
            Ok(())
        } else if self.patterns.is_empty() {
            Err("this server accepts no client URIs (the operator sets --allow-uri)".into())
        } else {
            Err("the URI matches no --allow-uri pattern".into())
        }
    }
}

/// The authority's host, without user info or port, as written in the URI.
fn host(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    authority.split(':').next().unwrap_or_default()
}

fn is_link_local_host(uri: &str) -> bool {
    let host = host(uri).to_ascii_lowercase();
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => (ip.segments()[0] & 0xffc0) == 0xfe80,
        Err(_) => host == "metadata.google.internal" || host == "metadata",
    }
}

/// `*` matches any (possibly empty) run of characters; everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_prefixes_and_middles() {
        assert!(glob_match("rtsp://cam/*", "rtsp://cam/a/b"));
        assert!(glob_match("http://127.0.0.1:*/live.ts", "http://127.0.0.1:8080/live.ts"));
        assert!(!glob_match("http://127.0.0.1:*/live.ts", "http://127.0.0.1:8080/other.ts"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("rtsp://a", "rtsp://ab"));
    }

    #[test]
    fn only_allowed_network_uris_pass() {
        let list = UriAllowlist::new(vec!["rtsp://cams.example/*".into(), "*".into()]);
        assert!(list.check("rtsp://cams.example/1").is_ok());
        assert!(list.check("file:///etc/passwd").is_err(), "files never, even with a * pattern");
        assert!(list.check("/etc/passwd").is_err());
        assert!(list.check("../../etc/passwd").is_err());
        assert!(list.check("videotestsrc ! appsink").is_err());
        let strict = UriAllowlist::new(vec!["rtsp://cams.example/*".into()]);
        assert!(strict.check("rtsp://elsewhere/1").is_err());
        assert!(UriAllowlist::default().check("rtsp://cams.example/1").is_err());
        assert!(list.check("rtsp://cams.example/1\"!filesink").unwrap_err().contains("quotes"), "no way out of a quoted pipeline property");
        for metadata in ["http://169.254.169.254/latest/meta-data", "http://user@[fe80::1]:80/x", "http://metadata.google.internal/"] {
            assert!(list.check(metadata).is_err(), "{metadata}");
        }
    }
}
