//! What `herald x509 mint` and `herald jwt mint` share: who signs (a
//! running server, or the keys of a server data directory) and for which
//! SPIFFE ID; and the SVID files that `x509 mint` and `api fetch x509`
//! write.

use std::path::{Path, PathBuf};

use clap::Args;

use super::admin_client::{SocketArgs, OUTPUT_LAST};
use super::data_dir::DataDir;
use super::{duration_flag, CliError, Output};
use crate::server::authorities::{Authorities, CaSettings};
use crate::spiffe::SpiffeId;

/// The flags of every mint command: who signs, for which SPIFFE ID, for
/// how long, and how to print the outcome.
#[derive(Debug, Args)]
pub(super) struct MintFlags {
    /// Server data directory whose keys sign (created if new), instead of
    /// asking the server.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArgs,
    /// The SPIFFE ID the SVID is for, e.g. spiffe://example.org/web.
    #[arg(long)]
    spiffe_id: String,
    /// Lifetime of the SVID (capped at its signer's); by default the
    /// server's default, or with --data-dir 1h for an X509-SVID and 5m for
    /// a JWT-SVID.
    #[arg(long)]
    ttl: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t, display_order = OUTPUT_LAST)]
    pub(super) output: Output,
}

/// A server data directory, opened, and its authorities for the SVID's
/// trust domain (created in a new directory).
pub(super) struct LocalKeys {
    pub(super) dir: DataDir,
    pub(super) authorities: Authorities,
}

/// Where the signing keys are.
pub(super) enum SignedBy<'a> {
    /// In a data directory (boxed: it is large and used once).
    DataDir(Box<LocalKeys>),
    /// A running server, at this admin socket (not yet dialled: the caller
    /// judges the rest of its input first).
    Server(&'a Path),
}

impl MintFlags {
    /// The `--spiffe-id` flag, parsed.
    pub(super) fn spiffe_id(&self) -> Result<SpiffeId, CliError> {
        SpiffeId::parse(&self.spiffe_id).map_err(|e| CliError::bad_input_in("--spiffe-id", &e))
    }

    /// The `--ttl` flag in seconds, when given.
    pub(super) fn ttl(&self) -> Result<Option<i64>, CliError> {
        self.ttl
            .as_deref()
            .map(|v| duration_flag("ttl", v))
            .transpose()
    }

    /// Opens the data directory, or names the server's socket. `ca` says
    /// how to create the authorities in a new data directory.
    pub(super) fn open(&self, id: &SpiffeId, ca: CaSettings) -> Result<SignedBy<'_>, CliError> {
        match &self.data_dir {
            Some(path) => {
                let dir = DataDir::open(path)?;
                let authorities = dir.authorities(id.trust_domain(), ca)?;
                Ok(SignedBy::DataDir(Box::new(LocalKeys { dir, authorities })))
            }
            None => Ok(SignedBy::Server(&self.socket.socket)),
        }
    }
}

/// A `--ttl` for the server, which takes `int32` seconds and reads 0 as
/// "your default".
pub(super) fn server_ttl(ttl: Option<i64>) -> Result<i32, CliError> {
    match ttl {
        Some(t) if t < 1 => Err(CliError::BadInput("--ttl: must be at least 1s".into())),
        Some(t) => {
            i32::try_from(t).map_err(|_| CliError::BadInput(format!("--ttl: {t}s is too long")))
        }
        None => Ok(0),
    }
}

pub(super) use crate::ca::keys::pem_certs;

/// An X509-SVID as PEM: what is printed or written.
pub(super) struct SvidPem {
    /// The leaf and its intermediates.
    pub(super) chain: String,
    /// The PKCS#8 private key.
    pub(super) key: String,
    /// The trust bundle's X.509 authorities.
    pub(super) bundle: String,
}

impl SvidPem {
    /// Writes `svid<suffix>.pem`, `svid<suffix>.key` (0600) and
    /// `bundle<suffix>.pem` into `dir`, creating it; returns the three paths.
    pub(super) fn write(&self, dir: &Path, suffix: &str) -> Result<[PathBuf; 3], CliError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::failed_in(format_args!("--write {}", dir.display()), &e))?;
        let svid = dir.join(format!("svid{suffix}.pem"));
        let key = dir.join(format!("svid{suffix}.key"));
        let bundle = dir.join(format!("bundle{suffix}.pem"));
        write_file(&svid, &self.chain, 0o644)?;
        write_file(&key, &self.key, 0o600)?;
        write_file(&bundle, &self.bundle, 0o644)?;
        Ok([svid, key, bundle])
    }
}

/// Writes `contents` to `path` with `mode`, atomically.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), CliError> {
    crate::fsutil::write_atomic(path, contents.as_bytes(), mode)
        .map_err(|e| CliError::failed_in(format_args!("writing {}", path.display()), &e))
}
