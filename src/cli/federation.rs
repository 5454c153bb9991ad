//! `herald federation create|list|show|update|delete|refresh`: federation
//! relationships on a running server, over its admin socket. A relationship
//! names a foreign trust domain, its bundle endpoint URL and profile
//! (`https_spiffe` with the endpoint's SPIFFE ID, or `https_web`); the
//! server then keeps that trust domain's bundle current.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::admin_client::{single, AdminArgs};
use super::paging::list_command;
use super::print::{format_time, print_outcome, print_record, Columns, Listed, Record, Shown};
use super::CliError;
use crate::proto::admin;
use crate::proto::admin::federation_relationship::BundleEndpointProfile as Profile;

/// `herald federation ...`
#[derive(Debug, Subcommand)]
pub(super) enum FederationCmd {
    /// Create a relationship: the server starts fetching the trust domain's bundle.
    Create(RelationshipArgs),
    /// List relationships with their refresh status; follows every page.
    List(AdminArgs),
    /// Show one relationship and how its refreshes went.
    Show(TrustDomainArgs),
    /// Replace a relationship's endpoint URL and profile (all flags as for create).
    Update(RelationshipArgs),
    /// Delete a relationship and its federated bundle.
    Delete(TrustDomainArgs),
    /// Fetch the trust domain's bundle now and report the outcome.
    Refresh(TrustDomainArgs),
}

/// Bundle endpoint profiles (SPIFFE Federation §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ProfileArg {
    /// The endpoint presents an X509-SVID with --endpoint-spiffe-id.
    #[value(name = "https_spiffe")]
    HttpsSpiffe,
    /// The endpoint presents a Web PKI certificate for the URL's host.
    #[value(name = "https_web")]
    HttpsWeb,
}

/// Flags of `create` and `update`.
#[derive(Debug, Args)]
pub(super) struct RelationshipArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The foreign trust domain's name (e.g. partner.org).
    #[arg(long)]
    trust_domain: String,
    /// Its bundle endpoint (https, no userinfo).
    #[arg(long, value_name = "URL")]
    bundle_endpoint_url: String,
    /// How the endpoint is authenticated.
    #[arg(long, value_enum)]
    profile: ProfileArg,
    /// The SPIFFE ID the endpoint's SVID must carry (https_spiffe only).
    #[arg(long, value_name = "SPIFFE_ID")]
    endpoint_spiffe_id: Option<String>,
    /// The trust domain's bundle (SPIFFE bundle JSON): on create it bootstraps
    /// https_spiffe; on update it replaces the stored bundle.
    #[arg(long, value_name = "FILE")]
    trust_domain_bundle: Option<PathBuf>,
}

/// Flags of the commands about one relationship.
#[derive(Debug, Args)]
pub(super) struct TrustDomainArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The foreign trust domain's name.
    #[arg(long)]
    trust_domain: String,
}

pub(super) fn run(cmd: FederationCmd) -> Result<(), CliError> {
    match cmd {
        FederationCmd::Create(args) => create_or_update(args, true),
        FederationCmd::List(args) => {
            list_command::<admin::ListFederationRelationshipsRequest>(&args)
        }
        FederationCmd::Show(args) => show(args),
        FederationCmd::Update(args) => create_or_update(args, false),
        FederationCmd::Delete(args) => delete(args),
        FederationCmd::Refresh(args) => refresh(args),
    }
}

fn relationship_from_flags(
    args: &RelationshipArgs,
) -> Result<admin::FederationRelationship, CliError> {
    let profile = match (args.profile, &args.endpoint_spiffe_id) {
        (ProfileArg::HttpsSpiffe, Some(id)) => Profile::HttpsSpiffe(admin::HttpsspiffeProfile {
            endpoint_spiffe_id: id.clone(),
        }),
        (ProfileArg::HttpsSpiffe, None) => {
            return Err(CliError::BadInput(
                "--endpoint-spiffe-id: required with --profile https_spiffe".into(),
            ))
        }
        (ProfileArg::HttpsWeb, None) => Profile::HttpsWeb(admin::HttpsWebProfile {}),
        (ProfileArg::HttpsWeb, Some(_)) => {
            return Err(CliError::BadInput(
                "--endpoint-spiffe-id: only with --profile https_spiffe".into(),
            ))
        }
    };
    let trust_domain_bundle = match &args.trust_domain_bundle {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            let path = path.display();
            CliError::bad_input_in(
                format_args!("--trust-domain-bundle: cannot read {path}"),
                &e,
            )
        })?,
        None => String::new(),
    };
    Ok(admin::FederationRelationship {
        trust_domain: args.trust_domain.clone(),
        bundle_endpoint_url: args.bundle_endpoint_url.clone(),
        bundle_endpoint_profile: Some(profile),
        trust_domain_bundle,
        refresh_status: None,
    })
}

fn create_or_update(args: RelationshipArgs, create: bool) -> Result<(), CliError> {
    let federation_relationships = vec![relationship_from_flags(&args)?];
    let client = args.admin.connect()?;
    let mut svc = client.federation();
    let results = if create {
        let req = admin::BatchCreateFederationRelationshipRequest {
            federation_relationships,
        };
        client
            .call(svc.batch_create_federation_relationship(req))?
            .results
    } else {
        let req = admin::BatchUpdateFederationRelationshipRequest {
            federation_relationships,
        };
        client
            .call(svc.batch_update_federation_relationship(req))?
            .results
    };
    let rel = single(results)?
        .federation_relationship
        .ok_or_else(|| CliError::Failed("the server answered no relationship".into()))?;
    if args.admin.output == super::Output::Table {
        let done = if create { "Created" } else { "Updated" };
        println!("{done} federation relationship with {}", rel.trust_domain);
    }
    print_record(args.admin.output, &rel)
}

fn show(args: TrustDomainArgs) -> Result<(), CliError> {
    let client = args.admin.connect()?;
    let req = admin::GetFederationRelationshipRequest {
        trust_domain: args.trust_domain,
    };
    let rel = client.call(client.federation().get_federation_relationship(req))?;
    print_record(args.admin.output, &rel)
}

fn delete(args: TrustDomainArgs) -> Result<(), CliError> {
    let client = args.admin.connect()?;
    let req = admin::BatchDeleteFederationRelationshipRequest {
        trust_domains: vec![args.trust_domain],
    };
    let results = client
        .call(
            client
                .federation()
                .batch_delete_federation_relationship(req),
        )?
        .results;
    let td = single(results)?.trust_domain;
    print_outcome(
        args.admin.output,
        || serde_json::json!({ "trust_domain": td, "deleted": true }),
        || format!("Deleted federation relationship with {td} and its federated bundle"),
    );
    Ok(())
}

fn refresh(args: TrustDomainArgs) -> Result<(), CliError> {
    let client = args.admin.connect()?;
    let td = args.trust_domain;
    let req = admin::RefreshBundleRequest {
        trust_domain: td.clone(),
    };
    let reply = client.call(client.federation().refresh_bundle(req))?;
    let sequence = reply.bundle.map(|b| b.sequence_number).unwrap_or(0);
    let changed = reply.changed;
    print_outcome(
        args.admin.output,
        || {
            serde_json::json!({
                "trust_domain": td,
                "changed": changed,
                "sequence_number": sequence,
            })
        },
        || {
            let what = if changed {
                "new authorities stored"
            } else {
                "authorities unchanged"
            };
            format!("Refreshed the bundle of {td}: sequence {sequence}, {what}")
        },
    );
    Ok(())
}

/// The profile's name and the endpoint ID (empty for https_web).
fn profile_text(r: &admin::FederationRelationship) -> (&'static str, String) {
    match &r.bundle_endpoint_profile {
        Some(Profile::HttpsSpiffe(p)) => ("https_spiffe", p.endpoint_spiffe_id.clone()),
        Some(Profile::HttpsWeb(_)) => ("https_web", String::new()),
        None => ("", String::new()),
    }
}

fn time_or_never(unix: i64) -> String {
    if unix == 0 {
        "never".into()
    } else {
        format_time(unix)
    }
}

fn refresh_summary(s: &admin::FederationRefreshStatus) -> String {
    if !s.last_error.is_empty() {
        format!("failing ({} in a row)", s.consecutive_failures)
    } else if s.last_success_at != 0 {
        format!("ok {}", format_time(s.last_success_at))
    } else {
        "pending".into()
    }
}

impl Record for admin::FederationRelationship {
    fn json(&self) -> Result<serde_json::Value, CliError> {
        let (profile, id) = profile_text(self);
        let s = self.refresh_status.clone().unwrap_or_default();
        let mut doc = serde_json::json!({
            "trust_domain": self.trust_domain,
            "bundle_endpoint_url": self.bundle_endpoint_url,
            "bundle_endpoint_profile": profile,
            "refresh_status": {
                "last_attempt_at": s.last_attempt_at,
                "last_success_at": s.last_success_at,
                "last_error": s.last_error,
                "consecutive_failures": s.consecutive_failures,
                "next_refresh_at": s.next_refresh_at,
                "bundle_sequence": s.bundle_sequence,
            },
        });
        if !id.is_empty() {
            doc["endpoint_spiffe_id"] = serde_json::Value::String(id);
        }
        Ok(doc)
    }
}

impl Shown for admin::FederationRelationship {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let (profile, id) = profile_text(self);
        let status = self.refresh_status.clone().unwrap_or_default();
        let mut fields = vec![
            ("Trust domain", self.trust_domain.clone()),
            ("Bundle endpoint URL", self.bundle_endpoint_url.clone()),
            ("Profile", profile.to_string()),
        ];
        if !id.is_empty() {
            fields.push(("Endpoint SPIFFE ID", id));
        }
        fields.extend([
            ("Bundle sequence", status.bundle_sequence.to_string()),
            ("Last attempt", time_or_never(status.last_attempt_at)),
            ("Last success", time_or_never(status.last_success_at)),
            ("Next refresh", time_or_never(status.next_refresh_at)),
        ]);
        if !status.last_error.is_empty() {
            fields.push(("Failures in a row", status.consecutive_failures.to_string()));
            fields.push(("Last error", status.last_error.clone()));
        }
        fields
    }
}

impl Listed for admin::FederationRelationship {
    const NAMES: (&'static str, &'static str) =
        ("federation_relationships", "federation relationships");

    fn columns(&self) -> Columns {
        let (profile, id) = profile_text(self);
        let status = self.refresh_status.clone().unwrap_or_default();
        vec![
            ("TRUST DOMAIN", self.trust_domain.clone()),
            ("PROFILE", profile.to_string()),
            ("BUNDLE ENDPOINT URL", self.bundle_endpoint_url.clone()),
            ("ENDPOINT SPIFFE ID", id),
            ("SEQUENCE", status.bundle_sequence.to_string()),
            ("LAST REFRESH", refresh_summary(&status)),
        ]
    }
}
