//! etcd endpoints as the fleet's front doors give them: `http://HOST:PORT` or
//! `https://HOST:PORT`, all with one scheme. One check, for the agent's `[fleet]` table and for
//! `tap session --etcd`.

/// Whether the endpoints use `https://`, or the index of the first bad one and why, worded for
/// any front door.
///
/// # Errors
/// The first endpoint that is not `http(s)://HOST:PORT`, or whose scheme differs from the first.
pub fn scheme<'a>(
    endpoints: impl IntoIterator<Item = &'a str>,
) -> Result<Option<bool>, (usize, &'static str)> {
    let mut https = None;
    for (i, e) in endpoints.into_iter().enumerate() {
        let (secure, rest) = if let Some(r) = e.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = e.strip_prefix("http://") {
            (false, r)
        } else {
            return Err((i, "use http://HOST:PORT or https://HOST:PORT"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err((i, "give a host and port, nothing else"));
        }
        if rest
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err((i, "give the port (etcd's client port is usually 2379)"));
        }
        if https.is_some_and(|s| s != secure) {
            return Err((i, "all endpoints must use the same scheme"));
        }
        https = Some(secure);
    }
    Ok(https)
}

#[cfg(test)]
mod tests {
    use super::scheme;

    #[test]
    fn one_scheme_host_and_port() {
        assert_eq!(scheme(["http://127.0.0.1:2379"]), Ok(Some(false)));
        assert_eq!(scheme(["https://a:1", "https://b:2/"]), Ok(Some(true)));
        assert_eq!(scheme([]), Ok(None));
        assert_eq!(scheme(["127.0.0.1:2379"]).unwrap_err().0, 0);
        assert_eq!(scheme(["http://a:1", "http://a"]).unwrap_err().0, 1);
        assert_eq!(
            scheme(["http://a:1", "https://b:2"]),
            Err((1, "all endpoints must use the same scheme"))
        );
        assert!(scheme(["http://u@a:1"]).is_err());
    }
}
