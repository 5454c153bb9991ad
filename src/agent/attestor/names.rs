//! User and group names from passwd- and group-format files, parsed once
//! and re-read only when the file changes, not on every request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// A parsed passwd- or group-format file and the mtime it was read at.
type NameTable = (SystemTime, HashMap<u32, String>);

/// Parsed name databases by file.
#[derive(Debug, Default)]
pub(super) struct NameDatabases {
    tables: Mutex<HashMap<PathBuf, NameTable>>,
}

impl NameDatabases {
    /// The name of id `id` in the passwd- or group-format `file`, if any.
    /// An unreadable file names nobody (and says so at debug level).
    pub(super) fn lookup(&self, file: &Path, id: u32) -> Option<String> {
        let mtime = match std::fs::metadata(file).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "cannot read name database");
                return None;
            }
        };
        // A poisoned lock only means another lookup panicked; the tables
        // inside are still whole.
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, table)) = tables.get(file) {
            if *seen == mtime {
                return table.get(&id).cloned();
            }
        }
        let contents = match std::fs::read_to_string(file) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(file = %file.display(), error = %e, "cannot read name database");
                return None;
            }
        };
        let table = name_table(&contents);
        let found = table.get(&id).cloned();
        tables.insert(file.to_path_buf(), (mtime, table));
        found
    }
}

/// Every `id -> name` of a passwd- or group-format file; the first line for
/// an id wins, as with getpwuid.
fn name_table(contents: &str) -> HashMap<u32, String> {
    let mut table = HashMap::new();
    for l in contents.lines().filter(|l| !l.starts_with('#')) {
        let mut fields = l.split(':');
        let (Some(name), Some(_password), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if let (false, Ok(id)) = (name.is_empty(), id.trim().parse::<u32>()) {
            table.entry(id).or_insert_with(|| name.to_owned());
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first name whose third `:`-separated field is `id`.
    fn name_for_id(contents: &str, id: u32) -> Option<String> {
        name_table(contents).remove(&id)
    }

    #[test]
    fn name_parser() {
        let passwd =
            "# comment\nroot:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n";
        assert_eq!(name_for_id(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_for_id(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_for_id(passwd, 7), None);
        assert_eq!(
            name_for_id("docker:x:999:alice,bob\n", 999).as_deref(),
            Some("docker")
        );
        assert_eq!(
            name_for_id("first:x:5:\nsecond:x:5:\n:x:6:\n", 5).as_deref(),
            Some("first")
        );
        assert_eq!(name_for_id(":x:6:\n", 6), None, "an empty name is no name");
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let (dir, file) = crate::testing::temp_path("group");
        std::fs::write(&file, "old:x:10:\n").unwrap();
        let db = NameDatabases::default();
        assert_eq!(db.lookup(&file, 10).as_deref(), Some("old"));
        std::fs::write(&file, "new:x:10:\n").unwrap();
        // Make sure the mtime differs even on a coarse-grained filesystem.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(db.lookup(&file, 10).as_deref(), Some("new"));
        assert_eq!(db.lookup(&dir.path().join("absent"), 10), None);
    }
}
