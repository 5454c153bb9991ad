//! `herald bundle show`: the trust bundle of a server data directory, as
//! SPIFFE bundle JSON or PEM.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::data_dir::DataDir;
use super::CliError;
use crate::ca::keys::der_to_pem;
use crate::store::DataStore;

/// `herald bundle ...`
#[derive(Debug, Subcommand)]
pub(super) enum BundleCmd {
    /// Show this trust domain's bundle.
    Show(ShowArgs),
}

/// Bundle encodings.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub(super) enum Format {
    /// SPIFFE bundle JSON (JWKS with spiffe_sequence).
    #[default]
    Spiffe,
    /// The X.509 authorities as PEM certificates.
    Pem,
}

/// Flags of `herald bundle show`.
#[derive(Debug, Args)]
pub(super) struct ShowArgs {
    /// Server data directory to read.
    #[arg(long)]
    data_dir: PathBuf,
    /// Encoding.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(super) fn run(cmd: BundleCmd) -> Result<(), CliError> {
    match cmd {
        BundleCmd::Show(args) => show(args),
    }
}

fn show(args: ShowArgs) -> Result<(), CliError> {
    if !args.data_dir.exists() {
        return Err(CliError::BadInput(format!(
            "--data-dir: {} does not exist",
            args.data_dir.display()
        )));
    }
    let dir = DataDir::open(&args.data_dir)?;
    let td = dir.own_trust_domain()?.ok_or_else(|| {
        CliError::BadInput(format!(
            "--data-dir: {} holds no CA yet",
            args.data_dir.display()
        ))
    })?;
    let bundle = dir
        .store
        .get_bundle(&td)
        .map_err(|e| CliError::Failed(e.to_string()))?
        .ok_or_else(|| CliError::Failed(format!("no bundle stored for {td}")))?;
    match args.format {
        Format::Spiffe => println!(
            "{}",
            bundle
                .to_spiffe_json()
                .map_err(|e| CliError::Failed(e.to_string()))?
        ),
        Format::Pem => {
            for c in &bundle.x509_authorities {
                print!("{}", der_to_pem(c, "CERTIFICATE"));
            }
        }
    }
    Ok(())
}
