//! The server role: the CA of one trust domain, wired to its datastore.

pub mod authorities;
