//! `herald jwt mint`: a JWT-SVID signed by the JWT key of a server data
//! directory (`--data-dir`), printed on stdout.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::data_dir::DataDir;
use super::{duration_flag, now_unix, CliError, Output};
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
    /// Server data directory whose JWT key signs (created if new).
    #[arg(long)]
    data_dir: PathBuf,
    /// The SPIFFE ID to put in `sub`.
    #[arg(long)]
    spiffe_id: String,
    /// Audience to put in `aud`; repeat for several.
    #[arg(long = "audience", required = true)]
    audiences: Vec<String>,
    /// Lifetime of the token (capped at the key's).
    #[arg(long, default_value = "5m")]
    ttl: String,
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
    let ttl = duration_flag("ttl", &args.ttl)?;
    let dir = DataDir::open(&args.data_dir)?;
    let authorities = dir.authorities(id.trust_domain(), CaSettings::default())?;
    let now = now_unix();
    let token = authorities
        .jwt()
        .sign(&id, &args.audiences, ttl, now)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "spiffe_id": id.as_str(), "token": token, "expires_at": (now + ttl).min(authorities.jwt().not_after()) })
        ),
        Output::Table => println!("{token}"),
    }
    Ok(())
}
