//! `herald token generate`: a single-use join token for a new agent,
//! created on a running server over its admin socket.

use clap::{Args, Subcommand};

use super::admin_client::{secs_i32, AdminArgs};
use super::print::{format_time, print_outcome};
use super::CliError;
use crate::proto::admin;

/// `herald token ...`
#[derive(Debug, Subcommand)]
pub(super) enum TokenCmd {
    /// Generate a single-use join token for a new agent.
    Generate(GenerateArgs),
}

/// Flags of `herald token generate`.
#[derive(Debug, Args)]
pub(super) struct GenerateArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// How long the token stays valid (e.g. 10m); the server default when absent.
    #[arg(long)]
    ttl: Option<String>,
    /// The SPIFFE ID the agent gets; by default
    /// spiffe://<td>/herald/agent/join_token/<token>.
    #[arg(long = "spiffe-id", value_name = "AGENT_ID")]
    spiffe_id: Option<String>,
}

pub(super) fn run(cmd: TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::Generate(args) => generate(args),
    }
}

fn generate(args: GenerateArgs) -> Result<(), CliError> {
    let ttl = match &args.ttl {
        Some(v) => {
            let ttl = secs_i32("ttl", v)?;
            if ttl < 1 {
                return Err(CliError::BadInput("--ttl: must be at least 1s".into()));
            }
            ttl
        }
        None => 0,
    };
    let client = args.admin.connect()?;
    let req = admin::CreateJoinTokenRequest {
        ttl,
        token: String::new(),
        agent_id: args.spiffe_id.unwrap_or_default(),
    };
    let token = client.call(client.agents().create_join_token(req))?;
    print_outcome(
        args.admin.output,
        || {
            serde_json::json!({
                "token": token.value,
                "agent_id": token.agent_id,
                "expires_at": token.expires_at,
            })
        },
        || {
            let expires = format_time(token.expires_at);
            format!(
                "Token:      {}\nAgent ID:   {}\nExpires at: {expires} ({})",
                token.value, token.agent_id, token.expires_at
            )
        },
    );
    Ok(())
}
