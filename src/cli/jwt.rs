//! `herald jwt mint`: a JWT-SVID printed on stdout, signed by a running
//! server over its admin socket, or by the JWT key of a server data
//! directory (`--data-dir`).

use crate::clock::now_unix;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::admin_client::{status_error, AdminClient, SocketArgs};
use super::data_dir::DataDir;
use super::{duration_flag, CliError, Output};
use crate::proto::admin;
use crate::server::authorities::CaSettings;
use crate::spiffe::SpiffeId;

/// `herald jwt ...`
#[derive(Debug, Subcommand)]
pub(super) enum JwtCmd {
    /// Mint a JWT-SVID.
    Mint(MintArgs),
}

/// Flags of `herald jwt mint`.
#[derive(Debug, Args)]
pub(super) struct MintArgs {
    /// Server data directory whose JWT key signs (created if new), instead
    /// of asking the server.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArgs,
    /// The SPIFFE ID to put in `sub`.
    #[arg(long)]
    spiffe_id: String,
    /// Audience to put in `aud`; repeat for several.
    #[arg(long = "audience", required = true)]
    audiences: Vec<String>,
    /// Lifetime of the token (capped at the key's); by default the server's
    /// default, or 5m with --data-dir.
    #[arg(long)]
    ttl: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub(super) fn run(cmd: JwtCmd) -> Result<(), CliError> {
    match cmd {
        JwtCmd::Mint(args) => mint(args),
    }
}

fn mint(args: MintArgs) -> Result<(), CliError> {
    let id = SpiffeId::parse(&args.spiffe_id)
        .map_err(|e| CliError::BadInput(format!("--spiffe-id: {e}")))?;
    if args.audiences.iter().any(|a| a.is_empty()) {
        return Err(CliError::BadInput("--audience: must not be empty".into()));
    }
    let ttl = match &args.ttl {
        Some(v) => Some(duration_flag("ttl", v)?),
        None => None,
    };
    let (token, expires_at) = match &args.data_dir {
        Some(data_dir) => {
            let ttl = ttl.unwrap_or(300);
            let dir = DataDir::open(data_dir)?;
            let authorities = dir.authorities(id.trust_domain(), CaSettings::default())?;
            let now = now_unix();
            let token = authorities
                .jwt()
                .sign(&id, &args.audiences, ttl, now)
                .map_err(|e| CliError::bad_input(&e))?;
            (token, (now + ttl).min(authorities.jwt().not_after()))
        }
        None => {
            let ttl = match ttl {
                Some(t) if t < 1 => {
                    return Err(CliError::BadInput("--ttl: must be at least 1s".into()))
                }
                Some(t) => i32::try_from(t)
                    .map_err(|_| CliError::BadInput(format!("--ttl: {t}s is too long")))?,
                None => 0,
            };
            let client = AdminClient::connect(&args.socket.socket)?;
            let svid = client
                .run(client.svids().mint_jwtsvid(admin::MintJwtsvidRequest {
                    id: id.to_string(),
                    audience: args.audiences.clone(),
                    ttl,
                }))
                .map_err(status_error)?
                .into_inner()
                .svid
                .ok_or_else(|| CliError::Failed("the server answered without an SVID".into()))?;
            (svid.token, svid.expires_at)
        }
    };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "spiffe_id": id.as_str(), "token": token, "expires_at": expires_at })
        ),
        Output::Table => println!("{token}"),
    }
    Ok(())
}
