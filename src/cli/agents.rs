//! `herald agent list|show|evict|ban`: attested agents, managed on a
//! running server over its admin socket. `herald agent run`, which starts
//! an agent, is flattened in from `agent_run.rs` and dispatched by `cli::run`.

use clap::{Args, Subcommand};

use super::admin_client::{
    collect_pages, format_time, print_fields, print_table, status_error, AdminClient, SocketArgs,
};
use super::{agent_run, CliError, Output};
use crate::proto::admin;

/// `herald agent ...`
#[derive(Debug, Subcommand)]
pub(super) enum AgentCmd {
    /// `agent run`.
    #[command(flatten)]
    Run(agent_run::RunCmd),
    /// List attested agents.
    List(ListArgs),
    /// Show one attested agent.
    Show(IdArgs),
    /// Evict an agent: its record is removed and it must attest again.
    Evict(IdArgs),
    /// Ban an agent: it may never attest again under that ID.
    Ban(IdArgs),
}

/// Flags of `herald agent list`.
#[derive(Debug, Args)]
pub(super) struct ListArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Flags of the commands about one agent.
#[derive(Debug, Args)]
pub(super) struct IdArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// The agent's SPIFFE ID.
    #[arg(long)]
    spiffe_id: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

pub(super) fn run(cmd: AgentCmd) -> Result<(), CliError> {
    match cmd {
        AgentCmd::Run(agent_run::RunCmd::Run { config }) => agent_run::run(&config, None),
        AgentCmd::List(args) => list(args),
        AgentCmd::Show(args) => show(args),
        AgentCmd::Evict(args) => revoke(args, false),
        AgentCmd::Ban(args) => revoke(args, true),
    }
}

fn list(args: ListArgs) -> Result<(), CliError> {
    let client = AdminClient::connect(&args.socket.socket)?;
    let agents = collect_pages(|token| {
        let page = client
            .run(client.agents().list_agents(admin::ListAgentsRequest {
                page_size: 0,
                page_token: token,
            }))?
            .into_inner();
        Ok((page.agents, page.next_page_token))
    })?;
    match args.output {
        Output::Json => {
            let agents: Vec<_> = agents.iter().map(agent_json).collect();
            println!("{}", serde_json::json!({ "agents": agents }));
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = agents
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.attestation_type.clone(),
                        a.x509svid_serial_number.clone(),
                        format_time(a.x509svid_expires_at),
                        if a.banned { "yes" } else { "no" }.to_string(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "SPIFFE ID",
                    "ATTESTATION",
                    "SVID SERIAL",
                    "SVID EXPIRES",
                    "BANNED",
                ],
                &rows,
            );
            println!("{} agents", agents.len());
        }
    }
    Ok(())
}

fn show(args: IdArgs) -> Result<(), CliError> {
    let client = AdminClient::connect(&args.socket.socket)?;
    let agent = client
        .run(client.agents().get_agent(admin::AgentIdRequest {
            id: args.spiffe_id.clone(),
        }))
        .map_err(status_error)?
        .into_inner();
    match args.output {
        Output::Json => println!("{}", agent_json(&agent)),
        Output::Table => {
            let mut fields = vec![
                ("SPIFFE ID", agent.id.clone()),
                ("Attestation type", agent.attestation_type.clone()),
                ("SVID serial", agent.x509svid_serial_number.clone()),
                ("SVID expires at", format_time(agent.x509svid_expires_at)),
                ("Banned", agent.banned.to_string()),
            ];
            for s in &agent.selectors {
                fields.push(("Selector", format!("{}:{}", s.r#type, s.value)));
            }
            print_fields(&fields);
        }
    }
    Ok(())
}

/// Evicts (`ban == false`) or bans an agent.
fn revoke(args: IdArgs, ban: bool) -> Result<(), CliError> {
    let client = AdminClient::connect(&args.socket.socket)?;
    let req = admin::AgentIdRequest {
        id: args.spiffe_id.clone(),
    };
    let mut agents = client.agents();
    let result = if ban {
        client.run(agents.ban_agent(req))
    } else {
        client.run(agents.delete_agent(req))
    };
    result.map_err(status_error)?;
    let done = if ban { "banned" } else { "evicted" };
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({ "spiffe_id": args.spiffe_id, done: true })
        ),
        Output::Table => println!("Agent {} {done}", args.spiffe_id),
    }
    Ok(())
}

fn agent_json(a: &admin::Agent) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "attestation_type": a.attestation_type,
        "x509svid_serial_number": a.x509svid_serial_number,
        "x509svid_expires_at": a.x509svid_expires_at,
        "selectors": a.selectors.iter().map(|s| serde_json::json!({"type": s.r#type, "value": s.value})).collect::<Vec<_>>(),
        "banned": a.banned,
        "can_reattest": a.can_reattest,
    })
}
