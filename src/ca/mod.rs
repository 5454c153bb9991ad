//! The certificate authority: keys, certificate templates, X.509 and JWT signing.
//!
//! Nothing here touches the network or the datastore. The server wires these
//! pieces to its store and its APIs; the local `herald x509 mint` command
//! wires them to a data directory.

pub mod bundle_check;
pub mod csr;
pub mod jwt;
pub mod key_manager;
pub mod key_pem;
pub mod keys;
pub mod pem;
pub mod public_key;
pub mod serial;
pub mod template;
mod tlv;
pub mod x509;

pub use csr::{verify_csr, CsrError, VerifiedCsr};
pub use jwt::{
    verify_jwt_svid, verify_jwt_svid_with_leeway, JwtKey, JwtSignError, JwtVerifyError,
    DEFAULT_JWT_LEEWAY_SECS,
};
pub use key_manager::{DiskKeyManager, KeyManager, KeyManagerError, MemoryKeyManager};
pub use keys::{KeyError, KeyPair, KeyType};
pub use x509::{SignedCert, SvidRequest, X509Authority, X509Error};

#[cfg(test)]
mod tests;
