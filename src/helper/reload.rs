//! Telling the program that reads the files that they changed: a signal to
//! the pid in its pid file, or a command with a timeout. The outcome is
//! logged either way; a failed reload never stops the helper (the files
//! are in place, and the next update tries again).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::helper::Reload;
use crate::errors::Chain;

/// Why a reload failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The pid file could not be read.
    #[error("cannot read the pid file {}", path.display())]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The pid file does not hold a positive process id.
    #[error("the pid file {} holds {content:?}, not a process id", path.display())]
    BadPid {
        /// The pid file.
        path: PathBuf,
        /// What it holds (trimmed).
        content: String,
    },
    /// kill(2) failed.
    #[error("cannot send {signal} to pid {pid}")]
    Kill {
        /// The signal's name.
        signal: String,
        /// The process.
        pid: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The command could not be started or waited for.
    #[error("cannot run {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The command ran past its timeout and was killed.
    #[error("{} ran longer than {timeout:?} and was killed", program.display())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// Its time limit.
        timeout: Duration,
    },
    /// The command exited unsuccessfully.
    #[error("{} exited with {status}", program.display())]
    Failed {
        /// The program.
        program: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
}

/// Runs `reload` and logs its outcome.
pub async fn reload(reload: &Reload) {
    let outcome = match reload {
        Reload::None => return,
        Reload::Signal {
            pid_file,
            signal,
            name,
        } => send_signal(pid_file, *signal, name).map(|pid| format!("sent {name} to pid {pid}")),
        Reload::Command {
            program,
            args,
            timeout,
        } => run_command(program, args, *timeout)
            .await
            .map(|()| format!("{} succeeded", program.display())),
    };
    match outcome {
        Ok(what) => tracing::info!(outcome = %what, "reload done"),
        Err(e) => tracing::warn!(error = %Chain(&e), "reload failed"),
    }
}

fn send_signal(pid_file: &Path, signal: i32, name: &str) -> Result<i32, ReloadError> {
    let text = std::fs::read_to_string(pid_file).map_err(|source| ReloadError::PidFile {
        path: pid_file.to_path_buf(),
        source,
    })?;
    let content = text.trim();
    let bad = || ReloadError::BadPid {
        path: pid_file.to_path_buf(),
        content: content.chars().take(32).collect(),
    };
    let raw: i32 = content.parse().map_err(|_| bad())?;
    let pid = rustix::process::Pid::from_raw(raw)
        .filter(|_| raw > 0)
        .ok_or_else(bad)?;
    // The config only admits signals of its own list, all named ones.
    let sig = rustix::process::Signal::from_named_raw(signal).ok_or_else(bad)?;
    rustix::process::kill_process(pid, sig).map_err(|e| ReloadError::Kill {
        signal: name.to_string(),
        pid: raw,
        source: e.into(),
    })?;
    Ok(raw)
}

async fn run_command(
    program: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<(), ReloadError> {
    let spawn_err = |source| ReloadError::Spawn {
        program: program.to_path_buf(),
        source,
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Err(ReloadError::Timeout {
                program: program.to_path_buf(),
                timeout,
            })
        }
        Ok(Err(e)) => Err(spawn_err(e)),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(ReloadError::Failed {
            program: program.to_path_buf(),
            status,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let e = run_command(
            Path::new("/bin/sleep"),
            &["30".into()],
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ReloadError::Timeout { .. }), "{e}");
        let e = run_command(Path::new("/bin/false"), &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
    }

    #[test]
    fn a_bad_pid_file_is_named() {
        let (_tmp, p) = crate::testing::temp_path("x.pid");
        std::fs::write(&p, "nope\n").unwrap();
        let e = send_signal(&p, libc::SIGHUP, "SIGHUP").unwrap_err();
        assert!(e.to_string().contains("not a process id"), "{e}");
    }
}
