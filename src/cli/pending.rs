//! Command groups whose commands arrive with the server and agent (issue #3
//! and later). They are laid out now so that `herald --help` shows the whole
//! shape of the tool; running one says plainly that it is not available yet
//! and exits 2, rather than pretending to work.

use clap::Subcommand;

use super::CliError;

/// Fails with the one-line message for a command not built yet.
pub(super) fn not_yet(what: &str) -> Result<(), CliError> {
    Err(CliError::BadInput(format!(
        "`herald {what}` is not available in this build yet; it arrives with the server and agent"
    )))
}

/// `herald agent run`; the admin commands of the group (list, show,
/// evict, ban) live in `agents.rs`, which flattens this in.
#[derive(Debug, Subcommand)]
pub(super) enum AgentCmd {
    /// Start the agent from a TOML configuration file.
    Run {
        /// Path of agent.toml.
        #[arg(long)]
        config: std::path::PathBuf,
    },
}

/// `herald federation ...`
#[derive(Debug, Subcommand)]
pub(super) enum FederationCmd {
    /// Create a federation relationship with another trust domain.
    Create,
    /// List federation relationships.
    List,
    /// Show one federation relationship.
    Show,
    /// Update a federation relationship.
    Update,
    /// Delete a federation relationship (and stop trusting its bundle).
    Delete,
    /// Fetch a federated bundle now instead of at its refresh hint.
    Refresh,
}

