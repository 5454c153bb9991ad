//! A child process (a `herald` role) whose stderr is read in the
//! background, line by line, each line time-stamped as it arrives, so a
//! test can wait for what the process says and a bench can time it.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

type Line = (Instant, String);

/// A running process; killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<Line>>>,
    lines: mpsc::Receiver<Line>,
}

impl Proc {
    /// Spawns `cmd` with stdout discarded and stderr collected by a thread
    /// named `bench-<name>-log`: in a benchmark, reading the log is the
    /// bench's own work, and the bench splits CPU time by thread-name
    /// prefix (`benches/herald/measure.rs`).
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::Builder::new()
            .name(format!("bench-{name}-log"))
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let stamped = (Instant::now(), line);
                    sink.lock().unwrap().push(stamped.clone());
                    // The receiver goes with the Proc; the log still fills.
                    let _ = tx.send(stamped);
                }
            })
            .expect("spawn the log reader");
        Proc { child, log, lines }
    }

    /// `herald dev --data-dir d` in `dir`, its stdout (where it prints its
    /// URLs and exports) sent to the stderr this harness reads.
    pub fn herald_dev(dir: &std::path::Path) -> Proc {
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir)
            .args([
                "-c",
                "exec \"$0\" dev --data-dir d 1>&2",
                env!("CARGO_BIN_EXE_herald"),
            ])
            .env_remove("HERALD_LOG")
            .env_remove("HERALD_ADMIN_SOCKET");
        Proc::spawn("dev", cmd)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the next stderr line containing `needle` that no earlier
    /// wait consumed (so the same message said again is waited for anew);
    /// the line. Panics with the log if none comes within `timeout` or the
    /// process exits first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line_at(needle, timeout).1
    }

    /// Like [`Proc::wait_for_line`], with the time the line arrived.
    pub fn wait_for_line_at(&mut self, needle: &str, timeout: Duration) -> (Instant, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(hit) if hit.1.contains(needle) => return hit,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line containing {needle:?} within {timeout:?}; the log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    /// The first stderr line ever containing `needle` (logged already, or
    /// waited for up to `timeout`) and when it arrived.
    pub fn first_line(&mut self, needle: &str, timeout: Duration) -> (Instant, String) {
        let seen = self
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(needle))
            .cloned();
        match seen {
            Some(hit) => hit,
            None => self.wait_for_line_at(needle, timeout),
        }
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap();
        let lines: Vec<&str> = log.iter().map(|(_, l)| l.as_str()).collect();
        lines.join("\n")
    }

    /// SIGKILL and reap: the process gets no chance to clean up. Later
    /// calls, and [`Proc::stop`], see it already gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (10 s at most, then SIGKILL). The exit status of
    /// a clean stop; None if it had to be killed. A process already reaped
    /// is not signalled again (its pid may belong to another by now).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    /// Kills the process (it is ours) and reaps it.
    fn drop(&mut self) {
        self.kill();
    }
}
