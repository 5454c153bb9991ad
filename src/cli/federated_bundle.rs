//! `herald bundle list|set|delete` and `bundle show --trust-domain TD`:
//! bundles of foreign trust domains on a running server, over its admin
//! socket. Bundles of trust domains with a federation relationship are kept
//! current by the server; these commands are for bundles set by hand (a
//! bundle set by hand counts as the latest until the next successful
//! refresh).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::admin_client::{
    check_item, collect_pages, only_result, print_table, status_error, AdminClient, SocketArgs,
};
use super::{CliError, Output};
use crate::ca::keys::{der_to_pem, pem_blocks};
use crate::proto::admin;
use crate::spiffe::{Bundle, TrustDomain};

/// The federated-bundle subcommands of `herald bundle`.
#[derive(Debug, Subcommand)]
pub(super) enum FederatedBundleCmd {
    /// List the federated bundles (foreign trust domains only).
    List(ListArgs),
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

/// Flags of `bundle list`.
#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
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
        FederatedBundleCmd::List(args) => list(args),
        FederatedBundleCmd::Set(args) => set(args),
        FederatedBundleCmd::Delete(args) => delete(args),
    }
}

/// `bundle show --trust-domain TD`: prints a federated bundle as SPIFFE
/// JSON, or its X.509 authorities as PEM with `pem`.
pub(super) fn show(socket: &Path, trust_domain: &str, pem: bool) -> Result<(), CliError> {
    let client = AdminClient::connect(socket)?;
    let reply =
        client
            .run(client.federated_bundles().get_federated_bundle(
                admin::GetFederatedBundleRequest {
                    trust_domain: trust_domain.to_string(),
                },
            ))
            .map_err(status_error)?
            .into_inner();
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

fn decode(reply: &admin::Bundle) -> Result<Bundle, CliError> {
    let bad = |e: &dyn std::fmt::Display| {
        CliError::Failed(format!("the server sent an unusable bundle: {e}"))
    };
    let td = TrustDomain::new(&reply.trust_domain).map_err(|e| bad(&e))?;
    Bundle::from_spiffe_json(td, reply.spiffe_json.as_bytes()).map_err(|e| bad(&e))
}

fn list(args: ListArgs) -> Result<(), CliError> {
    let client = AdminClient::connect(&args.socket.socket)?;
    let all = collect_pages(|token| {
        let page = client
            .run(client.federated_bundles().list_federated_bundles(
                admin::ListFederatedBundlesRequest {
                    page_size: 0,
                    page_token: token,
                },
            ))?
            .into_inner();
        Ok((page.bundles, page.next_page_token))
    })?;
    match args.output {
        Output::Json => {
            let items = all
                .iter()
                .map(|b| {
                    let doc: serde_json::Value = serde_json::from_str(&b.spiffe_json)
                        .map_err(|e| CliError::Failed(format!("the server sent bad JSON: {e}")))?;
                    Ok(serde_json::json!({
                        "trust_domain": b.trust_domain,
                        "sequence_number": b.sequence_number,
                        "bundle": doc,
                    }))
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            println!("{}", serde_json::json!({ "bundles": items }));
        }
        Output::Table => {
            let mut rows = Vec::with_capacity(all.len());
            for b in &all {
                let bundle = decode(b)?;
                rows.push(vec![
                    b.trust_domain.clone(),
                    b.sequence_number.to_string(),
                    bundle.x509_authorities.len().to_string(),
                    bundle.jwt_authorities.len().to_string(),
                    bundle
                        .refresh_hint
                        .map(|h| format!("{h}s"))
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            print_table(
                &[
                    "TRUST DOMAIN",
                    "SEQUENCE",
                    "X509 AUTHORITIES",
                    "JWT AUTHORITIES",
                    "REFRESH HINT",
                ],
                &rows,
            );
            println!("{} federated bundles", all.len());
        }
    }
    Ok(())
}

fn set(args: SetArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.path).map_err(|e| {
        CliError::BadInput(format!("--path: cannot read {}: {e}", args.path.display()))
    })?;
    let spiffe_json = match args.format {
        BundleFormat::Spiffe => text,
        BundleFormat::Pem => {
            let td = TrustDomain::new(&args.trust_domain)
                .map_err(|e| CliError::BadInput(format!("--trust-domain: {e}")))?;
            let certs = pem_blocks(&text, "CERTIFICATE")
                .map_err(|e| CliError::BadInput(format!("--path: {e}")))?;
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
                .map_err(|e| CliError::BadInput(format!("--path: {e}")))?
        }
    };
    let client = AdminClient::connect(&args.socket.socket)?;
    let results = client
        .run(client.federated_bundles().batch_set_federated_bundle(
            admin::BatchSetFederatedBundleRequest {
                bundle: vec![admin::Bundle {
                    trust_domain: args.trust_domain.clone(),
                    spiffe_json,
                    sequence_number: 0,
                }],
            },
        ))
        .map_err(status_error)?
        .into_inner()
        .results;
    let result = only_result(results)?;
    check_item(&result.status)?;
    let sequence = result.bundle.map(|b| b.sequence_number).unwrap_or(0);
    println!(
        "Set the bundle of {} (sequence {sequence})",
        args.trust_domain
    );
    Ok(())
}

fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let client = AdminClient::connect(&args.socket.socket)?;
    let results = client
        .run(client.federated_bundles().batch_delete_federated_bundle(
            admin::BatchDeleteFederatedBundleRequest {
                trust_domains: vec![args.trust_domain.clone()],
            },
        ))
        .map_err(status_error)?
        .into_inner()
        .results;
    let result = only_result(results)?;
    check_item(&result.status)?;
    println!("Deleted the bundle of {}", args.trust_domain);
    Ok(())
}
