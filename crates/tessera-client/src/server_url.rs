//! [`ServerUrl`]: the one spelling of a server's address, used both to
//! build request URLs and as the key under which tokens are stored.

use std::fmt;
use std::net::IpAddr;

use reqwest::Url;

use crate::Error;

/// The base URL of a Tessera server, normalised so that
/// `http://host:8080` and `http://host:8080/` are the same server.
///
/// Only `http` and `https` are accepted, without credentials, query or
/// fragment; a path prefix (for a server behind a proxy) is kept.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerUrl(String);

impl ServerUrl {
    /// Checks and normalises a server URL such as `https://auth.example`.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let refuse = |reason| Error::InvalidServerUrl {
            url: input.to_owned(),
            reason,
        };
        let url = Url::parse(input.trim()).map_err(|_| refuse("not an absolute URL"))?;

        if !matches!(url.scheme(), "http" | "https") {
            return Err(refuse("the scheme must be http or https"));
        }
        if url.host_str().is_none() {
            return Err(refuse("it has no host"));
        }
        // Credentials in the URL would end up in the credentials file and
        // in every message that shows the server.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("it must not carry a user name or password"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(refuse("it must not have a query or fragment"));
        }

        let mut normalised = url.to_string();
        while normalised.ends_with('/') {
            normalised.pop();
        }
        Ok(Self(normalised))
    }

    /// The normalised URL, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of `path` on this server.
    ///
    /// `path` must start with one `/`: anything that could name another
    /// host (`//evil.example`, `https://…`) is refused so the bearer token
    /// is only ever sent to this server.
    pub fn join(&self, path: &str) -> Result<Url, Error> {
        let refuse = || Error::InvalidPath {
            path: path.to_owned(),
        };
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(refuse());
        }
        if path.contains(['\\', '#']) || path.chars().any(char::is_whitespace) {
            return Err(refuse());
        }

        let url = Url::parse(&format!("{}{path}", self.0)).map_err(|_| refuse())?;
        let base = Url::parse(&self.0).map_err(|_| refuse())?;
        // Belt and braces: the joined URL must keep this server's origin.
        if url.origin() != base.origin() {
            return Err(refuse());
        }
        Ok(url)
    }

    /// The URL a request `target` names: a path on this server (as in
    /// [`join`](Self::join)), or a full URL that must have this server's
    /// origin and lie under its path prefix, since the access token goes
    /// with it.
    pub fn resolve(&self, target: &str) -> Result<Url, Error> {
        if target.starts_with('/') {
            return self.join(target);
        }
        let foreign = || Error::ForeignUrl {
            url: target.to_owned(),
            server: self.0.clone(),
        };
        let url = Url::parse(target).map_err(|_| Error::InvalidPath {
            path: target.to_owned(),
        })?;
        let base = Url::parse(&self.0).map_err(|_| foreign())?;
        if url.origin() != base.origin()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.fragment().is_some()
        {
            return Err(foreign());
        }
        // `Url::parse` has already folded `..` segments away, so the prefix
        // check sees the path the request will really use.
        let prefix = base.path().trim_end_matches('/');
        let path = url.path();
        if !prefix.is_empty() && path != prefix && !path.starts_with(&format!("{prefix}/")) {
            return Err(foreign());
        }
        Ok(url)
    }

    /// Whether the server is reached over plain HTTP on a host other than
    /// the loopback interface, where passwords and tokens could be read on
    /// the way.
    pub fn is_cleartext_remote(&self) -> bool {
        let Ok(url) = Url::parse(&self.0) else {
            return false;
        };
        if url.scheme() != "http" {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        // IPv6 hosts come bracketed, as in `http://[::1]:8080`.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => host != "localhost",
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({})", self.0)
    }
}

impl serde::Serialize for ServerUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ServerUrl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ServerUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_does_not_make_another_server() {
        let a = ServerUrl::parse("http://127.0.0.1:8080").unwrap();
        let b = ServerUrl::parse("http://127.0.0.1:8080/").unwrap();

        assert_eq!(a, b);
        assert_eq!(a.as_str(), "http://127.0.0.1:8080");
    }

    #[test]
    fn path_prefix_is_kept() {
        let server = ServerUrl::parse("https://example.test/auth/").unwrap();

        let url = server.join("/oauth/token").unwrap();

        assert_eq!(url.as_str(), "https://example.test/auth/oauth/token");
    }

    #[test]
    fn other_schemes_and_credentials_are_refused() {
        assert!(ServerUrl::parse("ftp://example.test").is_err());
        assert!(ServerUrl::parse("http://u:p@example.test").is_err());
        assert!(ServerUrl::parse("example.test").is_err());
        assert!(ServerUrl::parse("http://example.test/?a=b").is_err());
    }

    #[test]
    fn paths_that_could_reach_another_host_are_refused() {
        let server = ServerUrl::parse("http://127.0.0.1:8080").unwrap();

        for path in [
            "api/notes",
            "//evil.test/x",
            "http://evil.test/",
            "/\\evil.test",
            "/a b",
            "@evil.test",
        ] {
            assert!(server.join(path).is_err(), "{path} was accepted");
        }
        assert!(server.join("/api/notes?limit=2").is_ok());
    }

    #[test]
    fn full_urls_are_accepted_only_on_the_same_server() {
        let server = ServerUrl::parse("http://127.0.0.1:8080/auth").unwrap();

        let url = server
            .resolve("http://127.0.0.1:8080/auth/api/notes")
            .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/auth/api/notes");
        assert!(server.resolve("/api/notes").is_ok());
        for target in [
            "http://127.0.0.1:8081/auth/api/notes",
            "https://127.0.0.1:8080/auth/api/notes",
            "http://localhost:8080/auth/api/notes",
            "http://127.0.0.1:8080/other",
            "http://127.0.0.1:8080/authx",
            "http://127.0.0.1:8080/auth/../other",
            "http://u@127.0.0.1:8080/auth/x",
            "ftp://127.0.0.1:8080/auth/x",
        ] {
            assert!(server.resolve(target).is_err(), "{target} was accepted");
        }
    }

    #[test]
    fn cleartext_is_flagged_only_off_loopback() {
        let flag = |s| ServerUrl::parse(s).unwrap().is_cleartext_remote();

        assert!(flag("http://example.test"));
        assert!(!flag("http://127.0.0.1:1"));
        assert!(!flag("http://localhost:1"));
        assert!(!flag("http://[::1]:1"));
        assert!(!flag("https://example.test"));
    }
}
