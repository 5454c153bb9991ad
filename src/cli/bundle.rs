//! `herald bundle show`: this trust domain's bundle, as SPIFFE bundle JSON
//! or PEM, from a running server over its admin socket, or read from a
//! server data directory with `--data-dir`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::admin_client::{AdminClient, SocketArgs};
use super::data_dir::DataDir;
use super::CliError;
use crate::ca::keys::der_to_pem;
use crate::proto::admin;
use crate::spiffe::Bundle;
use crate::store::DataStore;

/// `herald bundle ...`
#[derive(Debug, Subcommand)]
pub(super) enum BundleCmd {
    /// Show this trust domain's bundle, or a federated one with --trust-domain.
    Show(ShowArgs),
    #[command(flatten)]
    Federated(super::federated_bundle::FederatedBundleCmd),
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
    /// Server data directory to read instead of asking the server.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArgs,
    /// Encoding.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// A federated (foreign) trust domain whose bundle to show instead.
    #[arg(long, conflicts_with = "data_dir")]
    trust_domain: Option<String>,
}

pub(super) fn run(cmd: BundleCmd) -> Result<(), CliError> {
    match cmd {
        BundleCmd::Show(args) => match &args.trust_domain {
            Some(td) => super::federated_bundle::show(
                &args.socket.socket,
                td,
                matches!(args.format, Format::Pem),
            ),
            None => show(args),
        },
        BundleCmd::Federated(cmd) => super::federated_bundle::run(cmd),
    }
}

fn show(args: ShowArgs) -> Result<(), CliError> {
    let bundle = match &args.data_dir {
        Some(dir) => from_data_dir(dir)?,
        None => from_server(&args.socket)?,
    };
    match args.format {
        Format::Spiffe => println!(
            "{}",
            bundle.to_spiffe_json().map_err(|e| CliError::failed(&e))?
        ),
        Format::Pem => {
            for c in &bundle.x509_authorities {
                print!("{}", der_to_pem(c, "CERTIFICATE"));
            }
        }
    }
    Ok(())
}

fn from_server(socket: &SocketArgs) -> Result<Bundle, CliError> {
    let client = AdminClient::connect(&socket.socket)?;
    let reply = client.call(client.bundles().get_bundle(admin::GetBundleRequest {}))?;
    super::federated_bundle::decode(&reply)
}

fn from_data_dir(data_dir: &std::path::Path) -> Result<Bundle, CliError> {
    if !data_dir.exists() {
        return Err(CliError::BadInput(format!(
            "--data-dir: {} does not exist",
            data_dir.display()
        )));
    }
    let dir = DataDir::open(data_dir)?;
    let td = dir.own_trust_domain()?.ok_or_else(|| {
        CliError::BadInput(format!(
            "--data-dir: {} holds no CA yet",
            data_dir.display()
        ))
    })?;
    dir.store
        .get_bundle(&td)
        .map_err(|e| CliError::failed(&e))?
        .ok_or_else(|| CliError::Failed(format!("no bundle stored for {td}")))
}
