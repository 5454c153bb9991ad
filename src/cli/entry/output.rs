//! How `herald entry` commands print entries and batch outcomes.

use super::json;
use crate::cli::admin_client::{failure, is_bad_input};
use crate::cli::print::{
    format_time, print_fields, selector_fields, Columns, Listed, Record, Shown,
};
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
        match failure(r) {
            Some(s) => {
                let what = match sent.get(i) {
                    Some(e) if !e.spiffe_id.is_empty() => format!("entry {i} ({})", e.spiffe_id),
                    _ => format!("entry {i}"),
                };
                failures.push((s.clone(), what));
            }
            None => {
                if let (Output::Table, Some(e)) = (output, &r.entry) {
                    if !first {
                        println!();
                    }
                    first = false;
                    println!("Entry {verb}:");
                    print_fields(&e.fields());
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

fn selectors_text(selectors: &[admin::Selector]) -> String {
    selectors
        .iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect::<Vec<_>>()
        .join(",")
}

impl Record for admin::Entry {
    fn json(&self) -> Result<serde_json::Value, CliError> {
        Ok(json::entry_json(self))
    }
}

impl Shown for admin::Entry {
    fn fields(&self) -> Vec<(&'static str, String)> {
        let ttl = |t: i32| {
            if t == 0 {
                "default".to_string()
            } else {
                format!("{t}s")
            }
        };
        let mut fields = vec![
            ("Entry ID", self.id.clone()),
            ("SPIFFE ID", self.spiffe_id.clone()),
            ("Parent ID", self.parent_id.clone()),
            ("Revision", self.revision_number.to_string()),
            ("X509-SVID TTL", ttl(self.x509_svid_ttl)),
            ("JWT-SVID TTL", ttl(self.jwt_svid_ttl)),
        ];
        fields.extend(selector_fields(&self.selectors));
        fields.extend(self.dns_names.iter().map(|d| ("DNS name", d.clone())));
        fields.extend(
            self.federates_with
                .iter()
                .map(|f| ("Federates with", f.clone())),
        );
        let flags = [("Admin", self.admin), ("Downstream", self.downstream)];
        fields.extend(
            flags
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(l, _)| (l, "true".into())),
        );
        if !self.hint.is_empty() {
            fields.push(("Hint", self.hint.clone()));
        }
        if self.expires_at != 0 {
            fields.push(("Expires at", format_time(self.expires_at)));
        }
        fields.push(("Created at", format_time(self.created_at)));
        fields
    }
}

impl Listed for admin::Entry {
    const NAMES: (&'static str, &'static str) = ("entries", "entries");

    fn columns(&self) -> Columns {
        vec![
            ("ENTRY ID", self.id.clone()),
            ("SPIFFE ID", self.spiffe_id.clone()),
            ("PARENT ID", self.parent_id.clone()),
            ("SELECTORS", selectors_text(&self.selectors)),
        ]
    }
}
