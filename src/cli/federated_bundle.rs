//! `herald bundle list|set|delete` and `bundle show --trust-domain TD`:
//! bundles of foreign trust domains on a running server, over its admin
//! socket. Bundles of trust domains with a federation relationship are kept
//! current by the server; these commands are for bundles set by hand (a
//! bundle set by hand counts as the latest until the next successful
//! refresh).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::admin_client::{single, AdminArgs, AdminClient, SocketArgs};
use super::paging::list_command;
use super::print::{Columns, Listed, Record};
use super::CliError;
use crate::ca::keys::{der_to_pem, pem_blocks};
use crate::proto::admin;
use crate::spiffe::{Bundle, TrustDomain};

/// The federated-bundle subcommands of `herald bundle`.
#[derive(Debug, Subcommand)]
pub(super) enum FederatedBundleCmd {
    /// List the federated bundles (foreign trust domains only).
    List(AdminArgs),
    /// Set a foreign trust domain's bundle by hand (create or replace).
    Set(SetArgs),
    /// Delete a federated bundle (one without a federation relationship).
    Delete(DeleteArgs),
}

/// Encodings of a bundle file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(super) enum BundleFormat {
    /// SPIFFE bundle JSON (JWKS with spiffe_sequence).
    #[default]
    Spiffe,
    /// PEM certificates: the X.509 authorities only.
    Pem,
}

/// Flags of `bundle set`.
#[derive(Debug, Args)]
pub(super) struct SetArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The foreign trust domain whose bundle this is.
    #[arg(long)]
    trust_domain: String,
    /// The bundle file.
    #[arg(long, value_name = "FILE")]
    path: PathBuf,
    /// The file's encoding.
    #[arg(long, value_enum, default_value_t)]
    format: BundleFormat,
}

/// Flags of `bundle delete`.
#[derive(Debug, Args)]
pub(super) struct DeleteArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The foreign trust domain whose bundle to delete.
    #[arg(long)]
    trust_domain: String,
}

pub(super) fn run(cmd: FederatedBundleCmd) -> Result<(), CliError> {
    match cmd {
        FederatedBundleCmd::List(args) => list_command::<admin::ListFederatedBundlesRequest>(&args),
        FederatedBundleCmd::Set(args) => set(args),
        FederatedBundleCmd::Delete(args) => delete(args),
    }
}

/// `bundle show --trust-domain TD`: prints a federated bundle as SPIFFE
/// JSON, or its X.509 authorities as PEM with `pem`.
pub(super) fn show(socket: &Path, trust_domain: &str, pem: bool) -> Result<(), CliError> {
    let client = AdminClient::connect(socket)?;
    let req = admin::GetFederatedBundleRequest {
        trust_domain: trust_domain.to_string(),
    };
    let reply = client.call(client.federated_bundles().get_federated_bundle(req))?;
    let bundle = decode(&reply)?;
    if pem {
        for c in &bundle.x509_authorities {
            print!("{}", der_to_pem(c, "CERTIFICATE"));
        }
    } else {
        println!("{}", reply.spiffe_json);
    }
    Ok(())
}

/// A bundle the server sent, checked and parsed.
pub(super) fn decode(reply: &admin::Bundle) -> Result<Bundle, CliError> {
    let bad = "the server sent an unusable bundle";
    let td = TrustDomain::new(&reply.trust_domain).map_err(|e| CliError::failed_in(bad, &e))?;
    Bundle::from_spiffe_json(td, reply.spiffe_json.as_bytes())
        .map_err(|e| CliError::failed_in(bad, &e))
}

fn set(args: SetArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.path).map_err(|e| {
        let path = args.path.display();
        CliError::bad_input_in(format_args!("--path: cannot read {path}"), &e)
    })?;
    let spiffe_json = match args.format {
        BundleFormat::Spiffe => text,
        BundleFormat::Pem => spiffe_json_of_pem(&args, &text)?,
    };
    let client = AdminClient::connect(&args.socket.socket)?;
    let req = admin::BatchSetFederatedBundleRequest {
        bundle: vec![admin::Bundle {
            trust_domain: args.trust_domain.clone(),
            spiffe_json,
            sequence_number: 0,
        }],
    };
    let results = client
        .call(client.federated_bundles().batch_set_federated_bundle(req))?
        .results;
    let sequence = single(results)?
        .bundle
        .map(|b| b.sequence_number)
        .unwrap_or(0);
    println!(
        "Set the bundle of {} (sequence {sequence})",
        args.trust_domain
    );
    Ok(())
}

/// A bundle of the X.509 authorities in the PEM file `text`.
fn spiffe_json_of_pem(args: &SetArgs, text: &str) -> Result<String, CliError> {
    let td = TrustDomain::new(&args.trust_domain)
        .map_err(|e| CliError::bad_input_in("--trust-domain", &e))?;
    let certs =
        pem_blocks(text, "CERTIFICATE").map_err(|e| CliError::bad_input_in("--path", &e))?;
    if certs.is_empty() {
        return Err(CliError::BadInput(format!(
            "--path: {} holds no CERTIFICATE block",
            args.path.display()
        )));
    }
    let mut bundle = Bundle::new(td);
    bundle.x509_authorities = certs;
    bundle
        .to_spiffe_json()
        .map_err(|e| CliError::bad_input_in("--path", &e))
}

fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let client = AdminClient::connect(&args.socket.socket)?;
    let req = admin::BatchDeleteFederatedBundleRequest {
        trust_domains: vec![args.trust_domain.clone()],
    };
    let results = client
        .call(
            client
                .federated_bundles()
                .batch_delete_federated_bundle(req),
        )?
        .results;
    single(results)?;
    println!("Deleted the bundle of {}", args.trust_domain);
    Ok(())
}

impl Record for admin::Bundle {
    fn json(&self) -> Result<serde_json::Value, CliError> {
        let doc: serde_json::Value = serde_json::from_str(&self.spiffe_json)
            .map_err(|e| CliError::failed_in("the server sent bad JSON", &e))?;
        Ok(serde_json::json!({
            "trust_domain": self.trust_domain,
            "sequence_number": self.sequence_number,
            "bundle": doc,
        }))
    }
}

impl Listed for admin::Bundle {
    const NAMES: (&'static str, &'static str) = ("bundles", "federated bundles");

    fn columns(&self) -> Columns {
        // Listed bundles are `usable`, so this decodes; a default one (asked
        // only for the titles) does not, and counts nothing.
        let bundle = decode(self).ok();
        let count = |n: fn(&Bundle) -> usize| bundle.as_ref().map_or(0, n).to_string();
        let hint = bundle.as_ref().and_then(|b| b.refresh_hint);
        vec![
            ("TRUST DOMAIN", self.trust_domain.clone()),
            ("SEQUENCE", self.sequence_number.to_string()),
            ("X509 AUTHORITIES", count(|b| b.x509_authorities.len())),
            ("JWT AUTHORITIES", count(|b| b.jwt_authorities.len())),
            (
                "REFRESH HINT",
                hint.map_or_else(|| "-".into(), |h| format!("{h}s")),
            ),
        ]
    }

    fn usable(&self) -> Result<(), CliError> {
        decode(self).map(drop)
    }
}
