//! Source URIs as logs, events and ListSources may show them: credentials never leave.

/// `scheme://user:secret@host/...` -> `scheme://user:***@host/...`.
pub fn redact_userinfo(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => uri.to_string(),
    }
}

/// `scheme://user:secret@host/...` -> `scheme://host/...`: how a URI source is named where
/// credentials have no business (the affinity header a proxy hashes, logs of other parties).
pub fn without_userinfo(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else { return uri.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{}", &rest[authority_end..]),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_is_hidden() {
        assert_eq!(redact_userinfo("rtsp://cam:pw@10.0.0.7:554/s1?a=b"), "rtsp://cam:***@10.0.0.7:554/s1?a=b");
        assert_eq!(redact_userinfo("rtsp://cam@host/s"), "rtsp://cam:***@host/s");
        assert_eq!(redact_userinfo("rtsp://a:b@c@host/s"), "rtsp://a:***@host/s", "the last @ ends the userinfo");
        assert_eq!(redact_userinfo("rtsp://host/p@th"), "rtsp://host/p@th", "an @ after the authority is not userinfo");
        assert_eq!(redact_userinfo("/videos/a.mp4"), "/videos/a.mp4");
    }

    #[test]
    fn without_userinfo_keeps_the_rest() {
        assert_eq!(without_userinfo("rtsp://cam:pw@10.0.0.7:554/s1?a=b"), "rtsp://10.0.0.7:554/s1?a=b");
        assert_eq!(without_userinfo("rtsp://10.0.0.7/s1"), "rtsp://10.0.0.7/s1");
    }
}
