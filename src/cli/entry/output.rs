//! How `herald entry` commands print entries and batch outcomes.

use super::json;
use crate::cli::admin_client::{format_time, is_bad_input, print_fields};
use crate::cli::{CliError, Output};
use crate::proto::admin;

/// Prints a batch's results; exits 2 when any item failed, with one line
/// per failed item on stderr.
pub(super) fn report_batch(
    sent: &[admin::Entry],
    results: &[admin::EntryResult],
    output: Output,
    verb: &str,
) -> Result<(), CliError> {
    let mut failures = Vec::new();
    let mut first = true;
    for (i, r) in results.iter().enumerate() {
        match &r.status {
            Some(s) if s.code != 0 => {
                let what = match sent.get(i) {
                    Some(e) if !e.spiffe_id.is_empty() => format!("entry {i} ({})", e.spiffe_id),
                    _ => format!("entry {i}"),
                };
                failures.push((s.clone(), what));
            }
            _ => {
                if let (Output::Table, Some(e)) = (output, &r.entry) {
                    if !first {
                        println!();
                    }
                    first = false;
                    println!("Entry {verb}:");
                    print_entry(e);
                }
            }
        }
    }
    if output == Output::Json {
        let results: Vec<_> = results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "status": json::status_json(&r.status),
                    "entry": r.entry.as_ref().map(json::entry_json),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "results": results }));
    }
    batch_outcome(failures, results.len(), "entries")
}

/// Turns a batch's failed items into the command's outcome: a lone item's
/// error is the command's error; several are listed, then counted.
pub(super) fn batch_outcome(
    failures: Vec<(admin::Status, String)>,
    total: usize,
    noun: &str,
) -> Result<(), CliError> {
    if failures.is_empty() {
        return Ok(());
    }
    let all_bad_input = failures
        .iter()
        .all(|(s, _)| is_bad_input(tonic::Code::from_i32(s.code)));
    let wrap = |m: String| {
        if all_bad_input {
            CliError::BadInput(m)
        } else {
            CliError::Failed(m)
        }
    };
    if total == 1 {
        if let Some((s, _)) = failures.first() {
            return Err(wrap(s.message.clone()));
        }
    }
    for (s, what) in &failures {
        eprintln!("herald: {what}: {}", s.message);
    }
    Err(wrap(format!("{} of {total} {noun} failed", failures.len())))
}

pub(super) fn selectors_text(selectors: &[admin::Selector]) -> String {
    selectors
        .iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn print_entry(e: &admin::Entry) {
    let ttl = |t: i32| {
        if t == 0 {
            "default".to_string()
        } else {
            format!("{t}s")
        }
    };
    let mut fields = vec![
        ("Entry ID", e.id.clone()),
        ("SPIFFE ID", e.spiffe_id.clone()),
        ("Parent ID", e.parent_id.clone()),
        ("Revision", e.revision_number.to_string()),
        ("X509-SVID TTL", ttl(e.x509_svid_ttl)),
        ("JWT-SVID TTL", ttl(e.jwt_svid_ttl)),
    ];
    for s in &e.selectors {
        fields.push(("Selector", format!("{}:{}", s.r#type, s.value)));
    }
    for d in &e.dns_names {
        fields.push(("DNS name", d.clone()));
    }
    for f in &e.federates_with {
        fields.push(("Federates with", f.clone()));
    }
    if e.admin {
        fields.push(("Admin", "true".into()));
    }
    if e.downstream {
        fields.push(("Downstream", "true".into()));
    }
    if !e.hint.is_empty() {
        fields.push(("Hint", e.hint.clone()));
    }
    if e.expires_at != 0 {
        fields.push(("Expires at", format_time(e.expires_at)));
    }
    fields.push(("Created at", format_time(e.created_at)));
    print_fields(&fields);
}
