//! `herald check` (is this configuration file valid? does this running
//! server hold mistakes? the latter in `check_live.rs`) and `herald
//! healthcheck` (is this server or agent answering?), for operators and
//! probes. Both exit 0 when all is well.

use crate::config::ConfigFile as _;
use std::path::{Path, PathBuf};

use crate::proto::{admin, workload};
use clap::Args;

use super::admin_client::{AdminClient, OUTPUT_LAST};
use super::api::{with_header, workload_client};
use super::check_live::check_live;
use super::runtime::runtime;
use super::{duration_flag, CliError, Output};
use crate::config::{AgentConfig, ServerConfig};
use crate::vet::Options;

/// `herald check`
#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// A server.toml or agent.toml to validate without starting anything.
    #[arg(long, required_unless_present = "socket", conflicts_with = "socket")]
    config: Option<PathBuf>,
    /// A running server's admin socket: vet its entries, federation,
    /// agents and authorities, and exit 1 on any error finding.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Report authorities and upstream certificates expiring sooner than this (with --socket).
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    expiry_horizon: String,
    /// Report agents not seen for longer than this (with --socket).
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    stale_agent_after: String,
    /// Output format of the findings (with --socket).
    #[arg(long, value_enum, default_value_t, display_order = OUTPUT_LAST)]
    output: Output,
}

/// `herald healthcheck`
#[derive(Debug, Args)]
pub(super) struct HealthcheckArgs {
    /// A server's admin socket: healthy when the admin API answers.
    #[arg(long, conflicts_with = "workload_socket")]
    admin_socket: Option<PathBuf>,
    /// An agent's Workload API socket: healthy when the Workload API answers.
    #[arg(long)]
    workload_socket: Option<PathBuf>,
}

pub(super) fn check(args: CheckArgs) -> Result<(), CliError> {
    let opts = Options {
        expiry_horizon: duration_flag("expiry-horizon", &args.expiry_horizon)?,
        stale_agent_after: duration_flag("stale-agent-after", &args.stale_agent_after)?,
    };
    match (args.config, args.socket) {
        (_, Some(socket)) => check_live(&socket, args.output, opts),
        (Some(config), None) => check_config(&config),
        (None, None) => Err(CliError::BadInput(
            "give --config (a file) or --socket (a running server)".into(),
        )),
    }
}

fn check_config(config: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| CliError::BadInput(format!("--config {}: {e}", config.display())))?;
    // A server config names a bind address or admin socket; an agent config
    // names its server. Judge by the keys, then report that role's errors.
    let is_agent = text
        .lines()
        .any(|l| l.trim_start().starts_with("server_address"));
    if is_agent {
        let c = AgentConfig::parse(config, &text).map_err(|e| CliError::bad_input(&e))?;
        println!(
            "{}: valid agent configuration for trust domain {}",
            config.display(),
            c.trust_domain
        );
    } else {
        let c = ServerConfig::parse(config, &text).map_err(|e| CliError::bad_input(&e))?;
        println!(
            "{}: valid server configuration for trust domain {}",
            config.display(),
            c.trust_domain
        );
    }
    Ok(())
}

pub(super) fn healthcheck(args: HealthcheckArgs) -> Result<(), CliError> {
    match (args.admin_socket, args.workload_socket) {
        (Some(socket), None) => {
            let client = AdminClient::connect(&socket)?;
            client
                .try_call(client.bundles().get_bundle(admin::GetBundleRequest {}))
                .map_err(|s| CliError::Failed(format!("server unhealthy: {}", s.message())))?;
            println!("server healthy");
            Ok(())
        }
        (None, Some(socket)) => runtime()?.block_on(agent_healthcheck(&socket)),
        _ => Err(CliError::BadInput(
            "give --admin-socket (a server) or --workload-socket (an agent)".into(),
        )),
    }
}

/// Any answer from the Workload API proves it serves; a request without an
/// audience is refused at once without touching the server.
async fn agent_healthcheck(socket: &Path) -> Result<(), CliError> {
    let unreachable = format!("agent unhealthy: cannot reach {}", socket.display());
    let mut client = workload_client(socket, unreachable).await?;
    let req = with_header(workload::ValidateJwtsvidRequest::default());
    match client.validate_jwtsvid(req).await {
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            println!("agent healthy");
            Ok(())
        }
        Err(s) => Err(CliError::Failed(format!(
            "agent unhealthy: {:?}: {}",
            s.code(),
            s.message()
        ))),
        Ok(_) => Err(CliError::Failed(
            "agent answered an empty request as valid".into(),
        )),
    }
}
