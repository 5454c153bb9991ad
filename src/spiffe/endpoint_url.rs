//! Bundle endpoint URLs (SPIFFE.md §5.4): `https`, a host, no userinfo, no
//! fragment. Parsing is the `url` crate's (WHATWG); the rules are ours.

use std::fmt;

use url::{Host, Position, Url};

/// Why a bundle endpoint URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("{url:?} is not a URL: {reason}")]
    NotAUrl {
        /// The text.
        url: String,
        /// The parser's complaint.
        #[source]
        reason: url::ParseError,
    },
    /// Another scheme than https.
    #[error("{url:?} must use the https scheme")]
    NotHttps {
        /// The text.
        url: String,
    },
    /// `user:password@` is not allowed.
    #[error("{url:?} must not contain userinfo (user@)")]
    UserInfo {
        /// The text.
        url: String,
    },
    /// No host.
    #[error("{url:?} has no host")]
    NoHost {
        /// The text.
        url: String,
    },
    /// A `#fragment` has no meaning to a server.
    #[error("{url:?} must not contain a fragment (#)")]
    Fragment {
        /// The text.
        url: String,
    },
}

/// A checked bundle endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    /// As given, for messages.
    text: String,
    url: Url,
    /// Host without IPv6 brackets (`::1`, `example.org`).
    host: String,
}

impl EndpointUrl {
    /// Checks `url` against the bundle endpoint URL rules.
    pub fn parse(text: &str) -> Result<EndpointUrl, UrlError> {
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(url::ParseError::EmptyHost) => return Err(UrlError::NoHost { url: text.into() }),
            Err(reason) => {
                return Err(UrlError::NotAUrl {
                    url: text.into(),
                    reason,
                })
            }
        };
        if url.fragment().is_some() {
            return Err(UrlError::Fragment { url: text.into() });
        }
        if url.scheme() != "https" {
            return Err(UrlError::NotHttps { url: text.into() });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::UserInfo { url: text.into() });
        }
        let host = match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(Host::Ipv4(a)) => a.to_string(),
            Some(Host::Ipv6(a)) => a.to_string(),
            _ => return Err(UrlError::NoHost { url: text.into() }),
        };
        Ok(EndpointUrl {
            text: text.to_string(),
            url,
            host,
        })
    }

    /// The host to connect to and name in TLS (no brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(443)
    }

    /// The `Host` header value (`example.org:8443`, `[::1]`).
    pub fn host_header(&self) -> String {
        // `parse` made sure there is a host.
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        }
    }

    /// Path and query, at least `/`.
    pub fn target(&self) -> &str {
        &self.url[Position::BeforePath..Position::AfterQuery]
    }

    /// Resolves a redirect's `Location` against this URL. The result is
    /// checked again.
    pub fn join(&self, location: &str) -> Result<EndpointUrl, UrlError> {
        match self.url.join(location) {
            Ok(joined) => EndpointUrl::parse(joined.as_str()),
            Err(reason) => Err(UrlError::NotAUrl {
                url: location.into(),
                reason,
            }),
        }
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_follow_the_profile_rules() {
        let u = EndpointUrl::parse("https://example.org:8443/bundle?x=1").unwrap();
        assert_eq!((u.host(), u.port()), ("example.org", 8443));
        assert_eq!(u.target(), "/bundle?x=1");
        assert_eq!(u.host_header(), "example.org:8443");
        let u = EndpointUrl::parse("https://[::1]").unwrap();
        assert_eq!((u.host(), u.port(), u.target()), ("::1", 443, "/"));
        assert_eq!(u.host_header(), "[::1]");
        for (url, kind) in [
            ("http://example.org/", "NotHttps"),
            ("https://user:pw@example.org/", "UserInfo"),
            ("https://user@example.org/", "UserInfo"),
            ("https://example.org/#x", "Fragment"),
            ("https://", "NoHost"),
            ("example.org", "NotAUrl"),
        ] {
            let got = match EndpointUrl::parse(url) {
                Err(UrlError::NotHttps { .. }) => "NotHttps",
                Err(UrlError::UserInfo { .. }) => "UserInfo",
                Err(UrlError::Fragment { .. }) => "Fragment",
                Err(UrlError::NoHost { .. }) => "NoHost",
                Err(UrlError::NotAUrl { .. }) => "NotAUrl",
                other => panic!("{url}: unexpected {other:?}"),
            };
            assert_eq!(got, kind, "{url}");
        }
        assert!(EndpointUrl::parse("").is_err());
        assert_eq!(u.join("/other").unwrap().to_string(), "https://[::1]/other");
        assert!(u.join("http://evil/").is_err());
    }

    #[test]
    fn refusals_say_why() {
        let e = EndpointUrl::parse("http://example.org/").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"http://example.org/\" must use the https scheme"
        );
        let e = EndpointUrl::parse("https://a.org/#f").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"https://a.org/#f\" must not contain a fragment (#)"
        );
    }
}
