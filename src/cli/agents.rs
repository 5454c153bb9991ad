//! `herald agent list|show|evict|ban`: attested agents, managed on a
//! running server over its admin socket. `herald agent run`, which starts
//! an agent, is flattened in from `agent_run.rs` and dispatched by `cli::run`.

use clap::{Args, Subcommand};

use super::admin_client::AdminArgs;
use super::paging::list_command;
use super::print::{
    format_time, print_outcome, print_record, selector_fields, Columns, Listed, Record, Shown,
};
use super::{agent_run, CliError};
use crate::proto::admin;

/// `herald agent ...`
#[derive(Debug, Subcommand)]
pub(super) enum AgentCmd {
    /// `agent run`.
    #[command(flatten)]
    Run(agent_run::RunCmd),
    /// List attested agents.
    List(AdminArgs),
    /// Show one attested agent.
    Show(IdArgs),
    /// Evict an agent: its record is removed and it must attest again.
    Evict(IdArgs),
    /// Ban an agent: it may never attest again under that ID.
    Ban(IdArgs),
}

/// Flags of the commands about one agent.
#[derive(Debug, Args)]
pub(super) struct IdArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The agent's SPIFFE ID.
    #[arg(long)]
    spiffe_id: String,
}

pub(super) fn run(cmd: AgentCmd) -> Result<(), CliError> {
    match cmd {
        AgentCmd::Run(agent_run::RunCmd::Run { config }) => agent_run::run(&config, None),
        AgentCmd::List(args) => list_command::<admin::ListAgentsRequest>(&args),
        AgentCmd::Show(args) => show(args),
        AgentCmd::Evict(args) => revoke(args, false),
        AgentCmd::Ban(args) => revoke(args, true),
    }
}

fn show(args: IdArgs) -> Result<(), CliError> {
    let client = args.admin.connect()?;
    let req = admin::AgentIdRequest { id: args.spiffe_id };
    let agent = client.call(client.agents().get_agent(req))?;
    print_record(args.admin.output, &agent)
}

/// Evicts (`ban == false`) or bans an agent.
fn revoke(args: IdArgs, ban: bool) -> Result<(), CliError> {
    let client = args.admin.connect()?;
    let req = admin::AgentIdRequest {
        id: args.spiffe_id.clone(),
    };
    let mut agents = client.agents();
    if ban {
        client.call(agents.ban_agent(req))?;
    } else {
        client.call(agents.delete_agent(req))?;
    }
    let done = if ban { "banned" } else { "evicted" };
    let id = args.spiffe_id;
    print_outcome(
        args.admin.output,
        || serde_json::json!({ "spiffe_id": id, done: true }),
        || format!("Agent {id} {done}"),
    );
    Ok(())
}

impl Record for admin::Agent {
    fn json(&self) -> Result<serde_json::Value, CliError> {
        let selectors: Vec<_> = self
            .selectors
            .iter()
            .map(|s| serde_json::json!({"type": s.r#type, "value": s.value}))
            .collect();
        Ok(serde_json::json!({
            "id": self.id,
            "attestation_type": self.attestation_type,
            "x509svid_serial_number": self.x509svid_serial_number,
            "x509svid_expires_at": self.x509svid_expires_at,
            "selectors": selectors,
            "banned": self.banned,
            "can_reattest": self.can_reattest,
            "connected": self.connected,
            "acked_bundle_sequence": self.acked_bundle_sequence,
            "last_seen_at": self.last_seen_at,
        }))
    }
}

impl Shown for admin::Agent {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("SPIFFE ID", self.id.clone()),
            ("Attestation type", self.attestation_type.clone()),
            ("SVID serial", self.x509svid_serial_number.clone()),
            ("SVID expires at", format_time(self.x509svid_expires_at)),
            ("Banned", self.banned.to_string()),
            ("Connected", self.connected.to_string()),
            ("Acked bundle", self.acked_bundle_sequence.to_string()),
            ("Last seen at", format_time(self.last_seen_at)),
        ];
        fields.extend(selector_fields(&self.selectors));
        fields
    }
}

impl Listed for admin::Agent {
    const NAMES: (&'static str, &'static str) = ("agents", "agents");

    fn columns(&self) -> Columns {
        let banned = if self.banned { "yes" } else { "no" };
        vec![
            ("SPIFFE ID", self.id.clone()),
            ("ATTESTATION", self.attestation_type.clone()),
            ("SVID SERIAL", self.x509svid_serial_number.clone()),
            ("SVID EXPIRES", format_time(self.x509svid_expires_at)),
            ("BANNED", banned.to_string()),
        ]
    }
}
