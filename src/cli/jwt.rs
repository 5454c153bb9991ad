//! `herald jwt mint`: a JWT-SVID printed on stdout, signed by a running
//! server over its admin socket, or by the JWT key of a server data
//! directory (`--data-dir`).

use clap::{Args, Subcommand};

use super::admin_client::AdminClient;
use super::mint::{server_ttl, MintFlags, SignedBy};
use super::print::print_outcome;
use super::CliError;
use crate::clock::now_unix;
use crate::proto::admin;
use crate::server::authorities::CaSettings;

/// `herald jwt ...`
#[derive(Debug, Subcommand)]
pub(super) enum JwtCmd {
    /// Mint a JWT-SVID.
    Mint(MintArgs),
}

/// Flags of `herald jwt mint`.
#[derive(Debug, Args)]
pub(super) struct MintArgs {
    #[command(flatten)]
    mint: MintFlags,
    /// Audience to put in `aud`; repeat for several.
    #[arg(long = "audience", required = true)]
    audiences: Vec<String>,
}

pub(super) fn run(cmd: JwtCmd) -> Result<(), CliError> {
    let JwtCmd::Mint(args) = cmd;
    let id = args.mint.spiffe_id()?;
    if args.audiences.iter().any(|a| a.is_empty()) {
        return Err(CliError::BadInput("--audience: must not be empty".into()));
    }
    let ttl = args.mint.ttl()?;
    let (token, expires_at) = match args.mint.open(&id, CaSettings::default())? {
        SignedBy::DataDir(local) => {
            let authorities = &local.authorities;
            let ttl = ttl.unwrap_or(300);
            let now = now_unix();
            let token = authorities
                .jwt()
                .sign(&id, &args.audiences, ttl, now)
                .map_err(|e| CliError::bad_input(&e))?;
            (token, (now + ttl).min(authorities.jwt().not_after()))
        }
        SignedBy::Server(socket) => {
            let req = admin::MintJwtsvidRequest {
                id: id.to_string(),
                audience: args.audiences.clone(),
                ttl: server_ttl(ttl)?,
            };
            let client = AdminClient::connect(socket)?;
            let svid = client
                .call(client.svids().mint_jwtsvid(req))?
                .svid
                .ok_or_else(|| CliError::Failed("the server answered without an SVID".into()))?;
            (svid.token, svid.expires_at)
        }
    };
    print_outcome(
        args.mint.output,
        || serde_json::json!({ "spiffe_id": id.as_str(), "token": token, "expires_at": expires_at }),
        || token.clone(),
    );
    Ok(())
}
