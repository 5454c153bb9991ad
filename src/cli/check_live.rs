//! `herald check --socket`: vets a running server. Fetches what the server
//! holds over its admin socket, hands it to [`crate::vet`], and prints the
//! findings, one block each (or a JSON array). Exits 1 when any finding is
//! an error, so a CI job or a cron can gate on it.

use std::path::Path;

use super::admin_client::AdminClient;
use super::paging::{collect_pages, PagedList};
use super::{CliError, Output};
use crate::clock::now_unix;
use crate::proto::admin;
use crate::vet::{vet, Finding, Inventory, Options, Severity};

/// Vets the server at `socket`; Ok when no finding is an error.
pub(super) fn check_live(socket: &Path, output: Output, opts: Options) -> Result<(), CliError> {
    let client = AdminClient::connect(socket)?;
    let inventory = fetch(&client)?;
    let findings = vet(&inventory, &opts);
    print(output, &findings)?;
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    if errors > 0 {
        return Err(CliError::Failed(format!(
            "{errors} error finding(s) on the server at {}",
            socket.display()
        )));
    }
    Ok(())
}

/// Everything the checks read, one list after another.
fn fetch(client: &AdminClient) -> Result<Inventory, CliError> {
    let entries = collect_pages(|page_token| {
        let req = admin::ListEntriesRequest {
            filter: None,
            page_size: 0,
            page_token,
        };
        let page = client.call(client.entries().list_entries(req))?;
        Ok((page.entries, page.next_page_token))
    })?;
    let authorities = client.call(
        client
            .authorities()
            .show_authorities(admin::ShowAuthoritiesRequest {}),
    )?;
    let bundle = client.call(client.bundles().get_bundle(admin::GetBundleRequest {}))?;
    Ok(Inventory {
        trust_domain: bundle.trust_domain,
        entries,
        agents: collect_pages(|t| admin::ListAgentsRequest::page(client, t))?,
        federated_bundles: collect_pages(|t| admin::ListFederatedBundlesRequest::page(client, t))?,
        relationships: collect_pages(|t| {
            admin::ListFederationRelationshipsRequest::page(client, t)
        })?,
        authorities,
        now: now_unix(),
    })
}

/// Prints the findings; a reader that went away (`| head`) is no failure.
fn print(output: Output, findings: &[Finding]) -> Result<(), CliError> {
    use std::fmt::Write as _;
    let mut text = String::new();
    match output {
        Output::Json => {
            text = serde_json::to_string_pretty(findings)
                .map_err(|e| CliError::failed_in("cannot encode the findings", &e))?;
            text.push('\n');
        }
        Output::Table => {
            for f in findings {
                // Writing to a String cannot fail.
                let _ = write!(
                    text,
                    "{}: {} [{}]\n  {}\n  fix: {}\n\n",
                    f.severity, f.object, f.check, f.message, f.remedy
                );
            }
            let count = |s| findings.iter().filter(|f| f.severity == s).count();
            let _ = writeln!(
                text,
                "{} error(s), {} warning(s), {} info",
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info)
            );
        }
    }
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::failed_in("cannot print the findings", &e))
        }
        _ => Ok(()),
    }
}
