//! SPIFFE data types, pure and free of I/O: IDs and trust domains, bundles,
//! JWK key conversion and JWT-SVID shapes.
//!
//! Everything here decodes input an outsider can send us (peer bundles,
//! tokens, IDs in requests), so every parser returns an error instead of
//! panicking and is a fuzz target.

pub mod bundle;
pub mod endpoint_url;
pub mod id;
pub(crate) mod json;
mod jwa;
pub mod jwk;
pub mod jwt;
#[cfg(test)]
mod test_support;

pub use bundle::{Bundle, BundleError, JwtAuthority};
pub use endpoint_url::{EndpointUrl, UrlError};
pub use id::{IdError, SpiffeId, TrustDomain};
pub use jwt::{JwtAlgorithm, JwtClaims, JwtError, JwtHeader, ParsedJwt};
