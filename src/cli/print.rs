//! How admin commands print what the server answered: a list of records as
//! a table or one JSON document, one record as aligned `label : value`
//! lines or JSON, and times as UTC. Each record type says how it looks
//! ([`Record`], [`Listed`]); the layout lives here once.

use serde_json::{Map, Value};

use super::{CliError, Output};

/// A record the server returns, as `--output json` prints it (alone or in
/// a list).
pub(super) trait Record {
    fn json(&self) -> Result<Value, CliError>;
}

/// A record that `show` prints as `label : value` lines.
pub(super) trait Shown: Record {
    /// The lines, in order (a label may repeat).
    fn fields(&self) -> Vec<(&'static str, String)>;
}

/// A record's row in a table: each column's title and cell.
pub(super) type Columns = Vec<(&'static str, String)>;

/// A record that `list` prints as one row of a table.
pub(super) trait Listed: Record + Default {
    /// The key of the JSON array, `{"<key>": [...]}`, and what the count
    /// line under the table counts ("3 agents").
    const NAMES: (&'static str, &'static str);
    /// The record's row. The titles must not depend on the record: those
    /// of a default record head the table.
    fn columns(&self) -> Columns;
    /// Fails when the record cannot be shown as a row at all (a bundle
    /// that does not decode).
    fn usable(&self) -> Result<(), CliError> {
        Ok(())
    }
}

/// Prints one record in `output`'s format.
pub(super) fn print_record(output: Output, record: &impl Shown) -> Result<(), CliError> {
    match output {
        Output::Json => println!("{}", record.json()?),
        Output::Table => print_fields(&record.fields()),
    }
    Ok(())
}

/// Prints every record: `{"<KEY>": [...]}`, or a table and a count line.
pub(super) fn print_list<T: Listed>(output: Output, records: &[T]) -> Result<(), CliError> {
    match output {
        Output::Json => {
            let docs = records.iter().map(T::json).collect::<Result<Vec<_>, _>>()?;
            let (key, _) = T::NAMES;
            let mut doc = Map::new();
            doc.insert(key.into(), docs.into());
            println!("{}", Value::Object(doc));
        }
        Output::Table => {
            let (_, noun) = T::NAMES;
            let titles: Vec<&str> = T::default().columns().into_iter().map(|(t, _)| t).collect();
            let mut rows = Vec::with_capacity(records.len());
            for record in records {
                record.usable()?;
                rows.push(record.columns().into_iter().map(|(_, cell)| cell).collect());
            }
            print_table(&titles, &rows);
            println!("{} {noun}", records.len());
        }
    }
    Ok(())
}

/// Prints the outcome of a command that changes something: `json` as one
/// document, or `text` as it stands.
pub(super) fn print_outcome(
    output: Output,
    json: impl FnOnce() -> Value,
    text: impl FnOnce() -> String,
) {
    match output {
        Output::Json => println!("{}", json()),
        Output::Table => println!("{}", text()),
    }
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// Prints `label : value` lines with the values aligned.
pub(super) fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in fields {
        println!("{label:<width$} : {value}");
    }
}

/// Selectors as `type:value`, one `Selector` field each.
pub(super) fn selector_fields(
    selectors: &[crate::proto::admin::Selector],
) -> impl Iterator<Item = (&'static str, String)> + '_ {
    selectors
        .iter()
        .map(|s| ("Selector", format!("{}:{}", s.r#type, s.value)))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn format_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_time_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
