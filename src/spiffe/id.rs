//! SPIFFE IDs and trust domains (SPIFFE-ID.md §2).
//!
//! Parsing is deliberately as strict as go-spiffe, which is what SPIRE and most
//! relying parties run: the scheme must be the literal lowercase `spiffe://` and
//! the trust domain must already be lowercase. rust-spiffe would normalise
//! `SPIFFE://Example.ORG`, but a CA that accepted it would issue names other
//! verifiers refuse. The 255-byte trust-domain and 2048-byte ID limits from the
//! spec are enforced too, although go-spiffe does not, so that nothing we issue
//! can be rejected by a stricter peer.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The only scheme prefix we accept; case-sensitive on purpose (see module docs).
const SCHEME: &str = "spiffe://";

/// RFC 3986 host limit, which SPIFFE-ID.md adopts for trust domains.
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// SPIFFE-ID.md: implementations must accept, and should not generate, more than this.
const MAX_ID_LEN: usize = 2048;

/// Why a SPIFFE ID or trust domain was refused. Byte positions count from the
/// start of the string that was handed to the failing function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing to parse.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input does not start with the literal lowercase `spiffe://`.
    #[error("SPIFFE ID must start with the lowercase scheme `spiffe://`")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path, or an empty trust-domain name.
    #[error("trust domain is missing or empty")]
    MissingTrustDomain,
    /// A trust-domain character outside `[a-z0-9._-]` (ports, userinfo,
    /// IPv6 brackets and percent-encoding all land here).
    #[error(
        "trust domain has invalid character {character:?} at byte {position}; \
         only a-z, 0-9, '.', '-' and '_' are allowed (no port, userinfo, IPv6 or percent-encoding)"
    )]
    BadTrustDomainChar {
        /// The offending character.
        character: char,
        /// Byte offset of the character in the input.
        position: usize,
    },
    /// An uppercase letter in the trust domain: go-spiffe refuses these, so we do too.
    #[error("trust domain has uppercase character {character:?} at byte {position}; trust domains must be lowercase")]
    UppercaseTrustDomain {
        /// The offending character.
        character: char,
        /// Byte offset of the character in the input.
        position: usize,
    },
    /// The trust domain is longer than the 255-byte host limit.
    #[error("trust domain is {len} bytes long; the limit is 255")]
    TrustDomainTooLong {
        /// Length of the trust domain in bytes.
        len: usize,
    },
    /// The path ends in `/` (including the bare `spiffe://td/` form).
    #[error("SPIFFE ID path must not end with '/'")]
    TrailingSlash,
    /// Two consecutive slashes in the path.
    #[error("SPIFFE ID path has an empty segment ('//') at byte {position}")]
    EmptySegment {
        /// Byte offset of the second slash.
        position: usize,
    },
    /// A `.` or `..` segment, which URI normalisation would rewrite.
    #[error("SPIFFE ID path has a '.' or '..' segment at byte {position}")]
    DotSegment {
        /// Byte offset of the segment's first character.
        position: usize,
    },
    /// A path character outside `[a-zA-Z0-9._-]` (query, fragment and
    /// percent-encoding land here).
    #[error(
        "SPIFFE ID path has invalid character {character:?} at byte {position}; \
         only A-Z, a-z, 0-9, '.', '-' and '_' are allowed in segments (no query, fragment or percent-encoding)"
    )]
    BadPathSegmentChar {
        /// The offending character.
        character: char,
        /// Byte offset of the character in the input.
        position: usize,
    },
    /// The whole ID, `spiffe://` included, is over 2048 bytes.
    #[error("SPIFFE ID is {len} bytes long; the limit is 2048 including `spiffe://`")]
    TooLong {
        /// Length of the ID in bytes.
        len: usize,
    },
    /// A path handed to [`SpiffeId::new`] that is neither empty nor starts with `/`.
    #[error("SPIFFE ID path must be empty or start with '/'")]
    PathNotAbsolute,
    /// [`TrustDomain::new`] was given `spiffe://...`; [`TrustDomain::parse`] accepts that form.
    #[error("expected a bare trust domain name such as `example.org`, not a `spiffe://` ID")]
    TrustDomainIdNotName,
    /// A trust domain was expected but the SPIFFE ID has a path.
    #[error("expected a trust domain or trust-domain ID, but the SPIFFE ID has a path")]
    UnexpectedPath,
}

// === impl TrustDomain ===

/// A validated trust-domain name such as `example.org`, the unit of trust
/// that bundles and federation are keyed by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Accepts only the bare name, so configuration that mixes up the name
    /// and the ID form is caught where it is written.
    pub fn new(name: &str) -> Result<Self, IdError> {
        if name.starts_with(SCHEME) {
            return Err(IdError::TrustDomainIdNotName);
        }
        validate_trust_domain(name, 0)?;
        Ok(Self(name.to_owned()))
    }

    /// Accepts both spellings in use on the wire: the bare name and the
    /// trust-domain ID (`spiffe://example.org`, which SPIRE uses as map keys).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.starts_with(SCHEME) {
            let id = SpiffeId::parse(s)?;
            if !id.is_trust_domain_id() {
                return Err(IdError::UnexpectedPath);
            }
            return Ok(id.td);
        }
        if s.contains("://") {
            return Err(IdError::WrongScheme);
        }
        Self::new(s)
    }

    /// The bare name, as used in bundle maps and configuration.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The `spiffe://<name>` form that Workload API maps and CA URI SANs use.
    pub fn id_string(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }

    /// The trust-domain ID (empty path), which a CA certificate carries as its URI SAN.
    pub fn to_spiffe_id(&self) -> SpiffeId {
        SpiffeId {
            uri: self.id_string(),
            td: self.clone(),
        }
    }
}

// === impl SpiffeId ===

/// A validated SPIFFE ID. The path may be empty only for trust-domain IDs
/// (CA certificates); leaf SVIDs need [`SpiffeId::is_trust_domain_id`] to be false.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    // Field order matters: the derived `Ord` sorts by the full URI first.
    uri: String,
    td: TrustDomain,
}

impl SpiffeId {
    /// Parses with go-spiffe's strictness plus the spec's length limits (see module docs).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        let Some(rest) = s.strip_prefix(SCHEME) else {
            return Err(IdError::WrongScheme);
        };
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong { len: s.len() });
        }
        let td_len = rest.find('/').unwrap_or(rest.len());
        let (td, path) = rest.split_at(td_len);
        validate_trust_domain(td, SCHEME.len())?;
        validate_path(path, SCHEME.len() + td_len)?;
        Ok(Self {
            uri: s.to_owned(),
            td: TrustDomain(td.to_owned()),
        })
    }

    /// Builds an ID from parts; `path` is `""` or `/seg(/seg)*`, and error
    /// positions count from the start of `path`.
    pub fn new(td: &TrustDomain, path: &str) -> Result<Self, IdError> {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(IdError::PathNotAbsolute);
        }
        validate_path(path, 0)?;
        let len = SCHEME.len() + td.0.len() + path.len();
        if len > MAX_ID_LEN {
            return Err(IdError::TooLong { len });
        }
        Ok(Self {
            uri: format!("{SCHEME}{}{path}", td.0),
            td: td.clone(),
        })
    }

    /// The trust domain whose bundle must be used to validate this ID's SVIDs.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The path, `""` for a trust-domain ID, otherwise starting with `/`.
    pub fn path(&self) -> &str {
        // `uri` is always `spiffe://` + the trust domain + the path, all ASCII.
        self.uri.get(SCHEME.len() + self.td.0.len()..).unwrap_or("")
    }

    /// The full URI, as it goes into a URI SAN or a JWT `sub`.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// True for `spiffe://td`: valid for CA certificates, not for leaf SVIDs.
    pub fn is_trust_domain_id(&self) -> bool {
        self.path().is_empty()
    }
}

// === string forms ===

/// Both types travel as their string form (configuration, JSON, URI SANs,
/// JWT claims); one definition gives them the same four conversions.
/// `from_str` is what `str::parse` accepts; `deserialize` is what a
/// configuration or JSON value must hold.
macro_rules! string_form {
    ($ty:ident, as_str: $as_str:path, from_str: $from_str:path, deserialize: $de:path) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($as_str(self))
            }
        }

        impl FromStr for $ty {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $from_str(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($as_str(self))
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                $de(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

// A trust domain in configuration is the bare name only (`TrustDomain::new`);
// `parse` also takes the `spiffe://` form seen on the wire.
string_form!(
    TrustDomain,
    as_str: TrustDomain::name,
    from_str: TrustDomain::parse,
    deserialize: TrustDomain::new
);
string_form!(
    SpiffeId,
    as_str: SpiffeId::as_str,
    from_str: SpiffeId::parse,
    deserialize: SpiffeId::parse
);

// === validation ===

/// Whether `s` can stand as one segment of a SPIFFE ID path: non-empty,
/// only `[A-Za-z0-9._-]`, and not `.` or `..`. Names that end up in a
/// path (a join token in the agent's default ID) or that must be just as
/// inert (a key's file name) are held to the same rule.
pub fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a bare trust-domain name; `offset` is where it starts in the caller's input.
fn validate_trust_domain(td: &str, offset: usize) -> Result<(), IdError> {
    if td.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    for (i, c) in td.char_indices() {
        let position = offset + i;
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => {
                return Err(IdError::UppercaseTrustDomain {
                    character: c,
                    position,
                })
            }
            _ => {
                return Err(IdError::BadTrustDomainChar {
                    character: c,
                    position,
                })
            }
        }
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong { len: td.len() });
    }
    Ok(())
}

/// Checks a path that is empty or starts with `/`; `offset` is where it starts
/// in the caller's input.
fn validate_path(path: &str, offset: usize) -> Result<(), IdError> {
    let Some(body) = path.strip_prefix('/') else {
        return Ok(());
    };
    let mut start = offset + 1;
    let mut segments = body.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment.is_empty() {
            if segments.peek().is_none() {
                return Err(IdError::TrailingSlash);
            }
            return Err(IdError::EmptySegment { position: start });
        }
        for (i, c) in segment.char_indices() {
            if !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                return Err(IdError::BadPathSegmentChar {
                    character: c,
                    position: start + i,
                });
            }
        }
        if segment == "." || segment == ".." {
            return Err(IdError::DotSegment { position: start });
        }
        start += segment.len() + 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "id_tests.rs"]
mod tests;
