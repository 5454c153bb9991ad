//! A PostgreSQL cluster of one test's own, for tests that stop and start
//! the database itself (the machine's shared PostgreSQL must not be
//! stopped under other tests). Made with Debian's binaries under
//! `/usr/lib/postgresql/<version>/bin` (the highest version there), in a
//! temp dir, listening on a free loopback port and a Unix socket in that
//! dir, trust authentication. initdb refuses to run as root, so under root
//! every command runs as the `postgres` OS user, on a dir chowned to it.
//!
//! Missing binaries skip the test outside CI and fail it under CI, as
//! [`super::postgres::temp_database`] does for the shared PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::bin::my_uid;
use super::dirs::free_port;

/// Where Debian installs PostgreSQL's server binaries, one dir per version.
const PG_LIB: &str = "/usr/lib/postgresql";

/// A running private cluster; stopped (immediate mode) and removed on drop.
pub struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Whether commands run as the `postgres` user (this process is root).
    as_postgres: bool,
    pub port: u16,
    /// Dropped last: the cluster stops before its files go.
    dir: tempfile::TempDir,
}

/// The bin dir of the highest PostgreSQL version installed, if any.
fn bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir(PG_LIB).ok()?;
    versions
        .filter_map(Result::ok)
        .filter_map(|d| {
            let version: u32 = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` OS user, from /etc/passwd.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .map(|f| {
            (
                f[2].parse().expect("a numeric uid"),
                f[3].parse().expect("a numeric gid"),
            )
        })
        .expect("a postgres user (Debian's postgresql package makes it) to run initdb as")
}

impl PrivatePg {
    /// A fresh cluster, started; `None` to skip (see the module docs).
    pub fn start() -> Option<PrivatePg> {
        let Some(bin) = bin_dir() else {
            let why = format!("no initdb and pg_ctl under {PG_LIB}/<version>/bin");
            if std::env::var_os("CI").is_some() {
                panic!("PostgreSQL's server binaries are required under CI: {why}");
            }
            eprintln!("SKIPPED: {why}; install Debian's postgresql package");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("herald-pg-")
            .tempdir()
            .expect("create the cluster's temp dir");
        let as_postgres = my_uid() == 0;
        if as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the cluster's dir to postgres");
        }
        let pg = PrivatePg {
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            port: free_port(),
            bin,
            as_postgres,
            dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path_str(&pg.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-locale",
                "--encoding=UTF8",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n",
            pg.port,
            pg.dir.path().display()
        );
        let conf_file = pg.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_file).expect("read postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_file, text).expect("write postgresql.conf");
        pg.start_again();
        Some(pg)
    }

    /// The connection string of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// Stops the cluster as an operator would (`pg_ctl stop -m fast`:
    /// clients are disconnected, open transactions rolled back, the data
    /// checkpointed); returns once it is down.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast", "-w"]);
    }

    /// Starts the (stopped) cluster; returns once it accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-w", "-t", "120", "-l", path_str(&self.log)]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let mut all = vec!["-D", path_str(&self.data)];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Runs `<bin>/<tool> args...` (as postgres under root), asserting
    /// success; the output names the tool and the server's log on failure.
    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool, args)
            .output()
            .expect("spawn a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} exited {:?}\nstdout: {}\nstderr: {}\nserver log: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // pg_ctl's children inherit the cwd; the postgres user must be
        // able to enter it (a root-only cwd makes initdb complain).
        cmd.args(args).current_dir(self.dir.path());
        cmd
    }
}

impl Drop for PrivatePg {
    /// Stops the cluster at once (a test that failed may leave it up);
    /// the temp dir goes afterwards.
    fn drop(&mut self) {
        let args = ["-D", path_str(&self.data), "stop", "-m", "immediate", "-w"];
        // Already stopped is fine: there is nothing to report from a drop.
        let _ = self.command("pg_ctl", &args).output();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}
