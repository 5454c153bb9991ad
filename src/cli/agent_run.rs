//! `herald agent run --config agent.toml`: the node agent.

use crate::config::ConfigFile as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::runtime::{init_role_logging, run_until_signal};
use super::CliError;
use crate::config::AgentConfig;

/// `herald agent run`; the admin commands of the group (list, show,
/// evict, ban) live in `agents.rs`, which flattens this in.
#[derive(Debug, Subcommand)]
pub(super) enum RunCmd {
    /// Start the agent from a TOML configuration file.
    Run {
        /// Path of agent.toml (see deploy/agent.toml for every key).
        #[arg(long)]
        config: PathBuf,
    },
}

pub(super) fn run(config: &Path, log_flag: Option<&str>) -> Result<(), CliError> {
    let config = AgentConfig::load(config).map_err(|e| CliError::bad_input(&e))?;
    init_role_logging(log_flag, &config.logging);
    let start = crate::agent::run::start(&config);
    run_until_signal(start, crate::agent::run::AgentHandle::shutdown)
}
