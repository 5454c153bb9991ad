//! `herald authority show|prepare|activate|taint|revoke`: the server's
//! X.509 and JWT signing authorities. Rotation runs by itself; these are for
//! inspecting it and for the key-compromise drill (prepare, activate, taint
//! the old authority, then revoke it).

use clap::{Args, Subcommand, ValueEnum};

use super::admin_client::{format_time, status_error, AdminClient, SocketArgs};
use super::{CliError, Output};
use crate::proto::admin::{
    AuthorityIdRequest, AuthorityInfo, AuthorityKindRequest, ShowAuthoritiesRequest,
};

/// `herald authority ...`
#[derive(Debug, Subcommand)]
pub(super) enum AuthorityCmd {
    /// Show every authority, its state and lifetime, and agents lagging behind the bundle.
    Show {
        #[command(flatten)]
        socket: SocketArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
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
    socket: SocketArgs,
    /// Which authority.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Flags naming one authority.
#[derive(Debug, Args)]
pub(super) struct IdArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Which kind.
    #[arg(long, value_enum)]
    kind: Kind,
    /// The authority's id (see `herald authority show`).
    #[arg(long)]
    id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
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

pub(super) fn run(cmd: AuthorityCmd) -> Result<(), CliError> {
    match cmd {
        AuthorityCmd::Show { socket, output } => {
            let client = AdminClient::connect(&socket.socket)?;
            let resp = client
                .run(
                    client
                        .authorities()
                        .show_authorities(ShowAuthoritiesRequest {}),
                )
                .map_err(status_error)?
                .into_inner();
            match output {
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
                        print_one(a, output);
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
        AuthorityCmd::Prepare(k) => kind_call(k, true),
        AuthorityCmd::Activate(k) => kind_call(k, false),
        AuthorityCmd::Taint(a) => id_call(a, true),
        AuthorityCmd::Revoke(a) => id_call(a, false),
    }
}

fn kind_call(k: KindArgs, prepare: bool) -> Result<(), CliError> {
    let client = AdminClient::connect(&k.socket.socket)?;
    let req = AuthorityKindRequest {
        kind: k.kind.wire(),
    };
    let mut svc = client.authorities();
    let resp = if prepare {
        client.run(svc.prepare_authority(req))
    } else {
        client.run(svc.activate_authority(req))
    }
    .map_err(status_error)?
    .into_inner();
    print_one(&resp, k.output);
    Ok(())
}

fn id_call(a: IdArgs, taint: bool) -> Result<(), CliError> {
    let client = AdminClient::connect(&a.socket.socket)?;
    let req = AuthorityIdRequest {
        kind: a.kind.wire(),
        id: a.id,
    };
    let mut svc = client.authorities();
    let resp = if taint {
        client.run(svc.taint_authority(req))
    } else {
        client.run(svc.revoke_authority(req))
    }
    .map_err(status_error)?
    .into_inner();
    print_one(&resp, a.output);
    Ok(())
}
