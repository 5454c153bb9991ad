//! Reading a process's facts from `/proc/<pid>`: its start time (to catch
//! pid reuse), its effective uid and its supplementary groups; and a
//! descriptor of the directory itself, which names the process rather than
//! its number (see `super::memo`).

use std::io::{self, Read as _};
use std::path::Path;

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

use super::AttestError;

/// Reads a file under `/proc/<pid>`, mapping "no such file" to `ProcessGone`.
pub(super) fn read_proc_file(path: &Path, pid: i32) -> Result<String, AttestError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => AttestError::ProcessGone { pid },
        // ESRCH: the process exited while the file was being read.
        _ if source.raw_os_error() == Some(3) => AttestError::ProcessGone { pid },
        _ => AttestError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

/// The start time of the process whose `/proc` directory is `dir`.
pub(super) fn read_start_time(dir: &Path, pid: i32) -> Result<u64, AttestError> {
    let path = dir.join("stat");
    let stat = read_proc_file(&path, pid)?;
    parse_start_time(&stat).ok_or(AttestError::Malformed {
        path,
        reason: "no start time after the command name",
    })
}

/// Opens `dir`, a `/proc/<pid>` directory: the descriptor keeps naming
/// that process (lookups through it fail once it is gone) even if the
/// number is reused.
pub(super) fn open_proc_dir(dir: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(dir, flags, Mode::empty())?)
}

/// The start time of the process whose `/proc/<pid>` directory `dir` was
/// opened by [`open_proc_dir`]; `None` once that process is gone.
pub(super) fn start_time_at(dir: impl AsFd) -> Option<u64> {
    let fd =
        rustix::fs::openat(dir, "stat", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut stat = String::new();
    std::fs::File::from(fd).read_to_string(&mut stat).ok()?;
    parse_start_time(&stat)
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`. The second field, the
/// command name in parentheses, may itself hold spaces and parentheses, so
/// counting starts after the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state); field 22 is 19 fields further.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

/// The effective uid (second number) of the `Uid:` line of `/proc/<pid>/status`,
/// the uid SO_PEERCRED reports.
pub(super) fn status_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The supplementary gids of the `Groups:` line (empty if the line is absent
/// or empty); `None` if it holds something other than numbers.
pub(super) fn status_groups(status: &str) -> Option<Vec<u32>> {
    let Some(line) = status.lines().find_map(|l| l.strip_prefix("Groups:")) else {
        return Some(Vec::new());
    };
    line.split_ascii_whitespace()
        .map(|g| g.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parser_counts_after_the_last_parenthesis() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21";
        assert_eq!(
            parse_start_time(&format!("77 (a) b (c) {tail}")),
            Some(424242)
        );
        assert_eq!(parse_start_time(&format!("77 (sh) {tail}")), Some(424242));
        assert_eq!(parse_start_time(&format!("77 ()) ) {tail}")), Some(424242));
        assert_eq!(parse_start_time("77 (sh) S 1 2"), None);
        assert_eq!(parse_start_time("77 no parenthesis"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_start_time(&own).is_some());
    }

    #[test]
    fn status_parsers() {
        let status =
            "Name:\tx\nUid:\t1000\t1001\t1000\t1000\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \n";
        assert_eq!(status_effective_uid(status), Some(1001));
        assert_eq!(status_groups(status), Some(vec![4, 24, 27]));
        assert_eq!(status_groups("Groups:\n"), Some(vec![]));
        assert_eq!(status_groups("Groups:\t4 x\n"), None);
    }
}
