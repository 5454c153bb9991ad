//! `herald authority show|prepare|activate|taint|revoke`: the server's
//! X.509 and JWT signing authorities. Rotation runs by itself; these are for
//! inspecting it and for the key-compromise drill (prepare, activate, taint
//! the old authority, then revoke it).

use clap::{Args, Subcommand, ValueEnum};

use super::admin_client::AdminArgs;
use super::print::format_time;
use super::{CliError, Output};
use crate::proto::admin::{
    AuthorityIdRequest, AuthorityInfo, AuthorityKindRequest, ShowAuthoritiesRequest,
};

/// `herald authority ...`
#[derive(Debug, Subcommand)]
pub(super) enum AuthorityCmd {
    /// Show every authority, its state and lifetime, and agents lagging behind the bundle.
    Show(AdminArgs),
    /// Mint and publish the next authority now.
    Prepare(KindArgs),
    /// Make the prepared authority the signing one now.
    Activate(KindArgs),
    /// Mark an old authority as compromised: agents re-issue what it signed at once.
    Taint(IdArgs),
    /// Remove a tainted authority from the bundle.
    Revoke(IdArgs),
}

/// X.509 or JWT.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Kind {
    /// The X.509 CA.
    X509,
    /// The JWT signing key.
    Jwt,
}

impl Kind {
    fn wire(self) -> String {
        match self {
            Kind::X509 => "x509".into(),
            Kind::Jwt => "jwt".into(),
        }
    }
}

/// Flags naming a kind.
#[derive(Debug, Args)]
pub(super) struct KindArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Which authority.
    #[arg(long, value_enum)]
    kind: Kind,
}

/// Flags naming one authority.
#[derive(Debug, Args)]
pub(super) struct IdArgs {
    #[command(flatten)]
    of_kind: KindArgs,
    /// The authority's id (see `herald authority show`).
    #[arg(long)]
    id: String,
}

/// What to do to an authority.
enum Change {
    Prepare,
    Activate,
    Taint(String),
    Revoke(String),
}

pub(super) fn run(cmd: AuthorityCmd) -> Result<(), CliError> {
    match cmd {
        AuthorityCmd::Show(args) => show(args),
        AuthorityCmd::Prepare(k) => change(k, Change::Prepare),
        AuthorityCmd::Activate(k) => change(k, Change::Activate),
        AuthorityCmd::Taint(a) => change(a.of_kind, Change::Taint(a.id)),
        AuthorityCmd::Revoke(a) => change(a.of_kind, Change::Revoke(a.id)),
    }
}

fn show(args: AdminArgs) -> Result<(), CliError> {
    let client = args.connect()?;
    let resp = client.call(
        client
            .authorities()
            .show_authorities(ShowAuthoritiesRequest {}),
    )?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "authorities": resp.authorities.iter().map(json).collect::<Vec<_>>(),
                "bundle_sequence": resp.bundle_sequence,
                "lagging_agents": resp.lagging_agents,
            })
        ),
        Output::Table => {
            for a in &resp.authorities {
                print_one(a, args.output);
            }
            println!("bundle sequence {}", resp.bundle_sequence);
            if !resp.lagging_agents.is_empty() {
                println!(
                    "agents behind the current bundle: {}",
                    resp.lagging_agents.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn change(args: KindArgs, change: Change) -> Result<(), CliError> {
    let client = args.admin.connect()?;
    let mut svc = client.authorities();
    let kind = args.kind.wire();
    let info = match change {
        Change::Prepare => client.call(svc.prepare_authority(AuthorityKindRequest { kind })),
        Change::Activate => client.call(svc.activate_authority(AuthorityKindRequest { kind })),
        Change::Taint(id) => client.call(svc.taint_authority(AuthorityIdRequest { kind, id })),
        Change::Revoke(id) => client.call(svc.revoke_authority(AuthorityIdRequest { kind, id })),
    }?;
    print_one(&info, args.admin.output);
    Ok(())
}

fn json(a: &AuthorityInfo) -> serde_json::Value {
    serde_json::json!({
        "id": a.id, "kind": a.kind, "state": a.state, "tainted": a.tainted,
        "not_before": a.not_before, "not_after": a.not_after, "key_id": a.key_id,
        "bundle_sequence": a.bundle_sequence,
    })
}

fn print_one(a: &AuthorityInfo, output: Output) {
    match output {
        Output::Json => println!("{}", json(a)),
        Output::Table => println!(
            "{:<5} {:<9} {:<38} {:<34} not_after={}{}",
            a.kind,
            a.state,
            a.id,
            a.key_id,
            format_time(a.not_after),
            if a.tainted { " TAINTED" } else { "" }
        ),
    }
}
