//! The client side of the node API, shared by everything that attests to a
//! Herald server: the agent, and a downstream server whose upstream
//! authority is another Herald server (nested servers).
//!
//! - [`connector`]: TLS to the server (its SPIFFE ID checked under the trust
//!   domain's roots), anonymous for attestation, mTLS afterwards.
//! - [`attest`](mod@attest): join-token attestation, returning the first credential.
//! - [`x509pop`]: the machine identity an x509pop node proves it holds.
//! - [`k8s_psat`]: the projected service-account token a k8s_psat node presents.
//! - [`csr`]: the CSRs a node sends (the server takes only the key).
//! - [`credentials`]: the credential and bundle kept on disk across restarts.
//! - [`targets`]: the server addresses, resolved at each connection round.
//! - [`resume`]: what an agent holds, as it tells the server when its Sync resumes.
//! - [`wire`]: conversions between Herald's types and node API messages,
//!   used by both ends.
//!
//! Nothing here imports the server or the agent role.

pub mod attest;
pub mod connector;
pub mod credentials;
pub mod csr;
pub mod k8s_psat;
pub mod resume;
pub mod targets;
pub mod wire;
pub mod x509pop;

pub use attest::{attest, attest_with, AttestError, Method};
pub use connector::{AgentCredential, NodeClientError, ServerConnector};
pub use credentials::{CredentialStore, CredentialStoreError};
pub use csr::{make_csr, CsrBuildError};
pub use targets::ServerTarget;
