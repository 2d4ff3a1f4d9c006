//! Where the Manager Interface is and how to log in: `ami://user:secret@host:port` (port 5038
//! by default). The secret is kept in a [`Secret`], which never prints itself: `Display` and
//! `Debug` of a [`Target`] show `ami://user:***@host:port`, as `store::redact_url` does for
//! database URLs.

use std::fmt;

/// AMI's well-known TCP port.
pub const DEFAULT_PORT: u16 = 5038;

/// A login secret. Never printed: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret; CR or LF in it is refused (it would end the header it is sent in).
    pub fn new(text: String) -> Result<Secret, TargetError> {
        if text.contains(['\r', '\n']) {
            return Err(TargetError("the secret contains a line break"));
        }
        Ok(Secret(text))
    }

    /// The secret itself, for the `Login` action only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A parsed `ami://` URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name or address (IPv6 without its brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The manager.conf user.
    pub username: String,
    /// Its secret.
    pub secret: Secret,
}

/// Why an `ami://` URL was refused (the text never contains the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad AMI URL: {0} (expected ami://user:secret@host:port)")]
pub struct TargetError(&'static str);

impl Target {
    /// Parses `ami://user:secret@host[:port]`; user and secret may be percent-encoded. A
    /// secret given separately (`--ami-secret-file`) replaces the URL's, and lets the URL
    /// omit it.
    pub fn parse(url: &str, secret: Option<Secret>) -> Result<Target, TargetError> {
        let rest = url
            .trim()
            .strip_prefix("ami://")
            .ok_or(TargetError("it does not start with ami://"))?;
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = rest.rsplit_once('@').ok_or(TargetError("no user name"))?;
        let (user, url_secret) = match userinfo.split_once(':') {
            Some((u, s)) => (u, Some(s)),
            None => (userinfo, None),
        };
        let username = percent_decode(user).ok_or(TargetError("bad %-escape in the user"))?;
        if username.is_empty() || username.contains(['\r', '\n']) {
            return Err(TargetError("no user name"));
        }
        let secret = match (secret, url_secret) {
            (Some(s), _) => s,
            (None, Some(s)) => {
                Secret::new(percent_decode(s).ok_or(TargetError("bad %-escape in the secret"))?)?
            }
            (None, None) => return Err(TargetError("no secret (give one, or --ami-secret-file)")),
        };
        let (host, port) = split_host_port(hostport).ok_or(TargetError("bad host or port"))?;
        Ok(Target {
            host,
            port,
            username,
            secret,
        })
    }

    /// `host:port` for connecting (`[v6]:port` for IPv6).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    /// `ami://user:***@host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ami://{}:***@{}", self.username, self.authority())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0)?,
        None => DEFAULT_PORT,
    };
    Some((host.to_owned(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_secret() {
        let t = Target::parse("ami://ipcountry:s3%3Acret@127.0.0.1:5038", None).expect("url");
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5038));
        assert_eq!(t.secret.expose(), "s3:cret");
        assert_eq!(t.to_string(), "ami://ipcountry:***@127.0.0.1:5038");
        assert!(!format!("{t:?}").contains("s3"), "{t:?}");
        let t =
            Target::parse("ami://u@[::1]", Some(Secret::new("f".into()).expect("ok"))).expect("v6");
        assert_eq!(
            (t.authority().as_str(), t.secret.expose()),
            ("[::1]:5038", "f")
        );
        for bad in [
            "http://u:s@h",
            "ami://u:s@",
            "ami://:s@h",
            "ami://u@h",
            "ami://u:s@h:0",
            "ami://u:s@h:99999",
            "ami://u:a%0Ab@h",
        ] {
            let e = Target::parse(bad, None).expect_err(bad);
            assert!(!e.to_string().contains("a\nb"), "{e}");
        }
    }
}
