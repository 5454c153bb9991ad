use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::*;
use crate::agent::attestor::tests::self_ids;

fn sleeper() -> Child {
    Command::new("sleep").arg("30").spawn().unwrap()
}

fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn exe_of(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

#[test]
fn a_caller_is_remembered_for_its_own_credential_only() {
    let (uid, gid) = self_ids();
    let pid = std::process::id() as i32;
    let attestor = UnixAttestor::new();
    assert_eq!(attestor.recall(pid, uid, gid), None);
    let fresh = attestor.attest(pid, uid, gid).unwrap();
    assert_eq!(attestor.attest_remembered(pid, uid, gid).unwrap(), fresh);
    assert_eq!(attestor.recall(pid, uid, gid), Some(fresh));
    // Another peer credential is another caller.
    assert_eq!(attestor.recall(pid, uid.wrapping_add(1), gid), None);
    assert_eq!(attestor.recall(pid, uid, gid.wrapping_add(1)), None);
    // A wrong peer uid is refused in full, as without the memo.
    let err = attestor
        .attest_remembered(pid, uid.wrapping_add(1), gid)
        .unwrap_err();
    assert!(matches!(err, AttestError::UidMismatch { .. }), "{err}");
}

#[test]
fn a_process_that_exits_is_forgotten() {
    let (uid, gid) = self_ids();
    let child = sleeper();
    let pid = child.id() as i32;
    let attestor = UnixAttestor::new();
    let selectors = attestor.attest_remembered(pid, uid, gid).unwrap();
    assert_eq!(attestor.recall(pid, uid, gid), Some(selectors));
    stop(child);
    assert_eq!(attestor.recall(pid, uid, gid), None);
    assert_eq!(attestor.memo.len(), 0, "the dead entry is dropped");
}

#[test]
fn an_exec_is_a_new_attestation() {
    let (uid, gid) = self_ids();
    let mut child = Command::new("sh")
        .args(["-c", "read line; exec sleep 30"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let shell = exe_of(pid).unwrap();
    let attestor = UnixAttestor::new();
    let before = attestor.attest_remembered(pid as i32, uid, gid).unwrap();
    assert!(attestor.recall(pid as i32, uid, gid).is_some());

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while exe_of(pid).as_ref() == Some(&shell) {
        assert!(Instant::now() < deadline, "the shell never ran exec");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(attestor.recall(pid as i32, uid, gid), None);
    let after = attestor.attest_remembered(pid as i32, uid, gid).unwrap();
    assert_ne!(after, before, "another executable, other selectors");
    let sleep = exe_of(pid).unwrap();
    assert!(
        after
            .iter()
            .any(|s| s.value() == format!("path:{}", sleep.display())),
        "{after:?}"
    );
    stop(child);
}

#[test]
fn a_reused_pid_is_never_served_the_old_attestation() {
    // Steering the next pid (ns_last_pid) needs CAP_SYS_ADMIN; elsewhere
    // `a_process_that_exits_is_forgotten` exercises the same check (the
    // kernel refuses a lookup through the old directory either way).
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let (uid, gid) = self_ids();
    let attestor = UnixAttestor::new();
    // Other processes on the machine may take the pid first: try again.
    for _ in 0..50 {
        let first = sleeper();
        let pid = first.id();
        attestor.attest_remembered(pid as i32, uid, gid).unwrap();
        stop(first);
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let second = sleeper();
        let reused = second.id() == pid;
        // Same pid, same uid and gid, same executable: only the process
        // differs.
        let recalled = attestor.recall(pid as i32, uid, gid);
        stop(second);
        if reused {
            assert_eq!(
                recalled, None,
                "pid {pid} reused and served the old attestation"
            );
            return;
        }
    }
    panic!("no pid was reused in 50 attempts");
}

#[test]
fn an_entry_only_lives_for_its_max_age() {
    let (uid, gid) = self_ids();
    let pid = std::process::id() as i32;
    let attestor = UnixAttestor::new();
    attestor.attest_remembered(pid, uid, gid).unwrap();
    assert!(attestor.recall(pid, uid, gid).is_some());
    std::thread::sleep(MAX_AGE);
    assert_eq!(attestor.recall(pid, uid, gid), None);
}

#[test]
fn a_directory_of_another_process_is_not_remembered_and_the_memo_is_capped() {
    let (uid, gid) = self_ids();
    let memo = AttestationMemo::default();
    let own = || open_proc_dir(Path::new("/proc/self")).unwrap();
    let start = start_time_at(own()).unwrap();
    let exe = ExeVersion::of_process_cached(own()).unwrap();
    let sel = vec![Selector::new("unix", "uid:7").unwrap()];
    memo.remember((1, uid, gid), own(), start + 1, exe, &sel);
    assert_eq!(memo.len(), 0, "the start time differs: another process");

    for pid in 1..=(CAPACITY as i32 + 10) {
        memo.remember((pid, uid, gid), own(), start, exe, &sel);
    }
    assert_eq!(memo.len(), CAPACITY);
    let last = CAPACITY as i32 + 10;
    assert_eq!(memo.recall(last, uid, gid), Some(sel));
    assert_eq!(memo.recall(1, uid, gid), None, "the oldest made room");
}

#[test]
fn the_cached_exe_version_is_the_hashed_files() {
    let dir = open_proc_dir(Path::new("/proc/self")).unwrap();
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    assert_eq!(
        ExeVersion::of_process_cached(&dir).unwrap(),
        ExeVersion::of_file(&file).unwrap()
    );
}
