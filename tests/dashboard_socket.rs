//! The web dashboard on a Unix socket (`[dashboard] socket`) of a real
//! `herald server run`, spoken to with curl: the admin uid gets the
//! overview whatever its Host header, the socket is 0600, another uid is
//! refused (by the mode, and by the per-request uid check once the mode is
//! loosened), and a bad value is a one-line error naming the key.

mod harness;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output};

use harness::cluster::{run_role, Server};
use harness::config::ServerToml;
use harness::dirs::temp_dir;

/// The uid a foreign client runs as (nobody).
const NOBODY: &str = "65534";

/// `curl -i` of `path` over the Unix socket `socket`, as `as_uid` when given.
fn curl(socket: &Path, path: &str, host: &str, as_uid: Option<&str>) -> Output {
    let mut cmd = match as_uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={uid}"),
                &format!("--regid={uid}"),
                "--clear-groups",
                "curl",
            ]);
            c
        }
        None => Command::new("curl"),
    };
    cmd.args(["-sS", "-i", "--max-time", "10", "--unix-socket"])
        .arg(socket)
        .args(["-H", &format!("Host: {host}")])
        .arg(format!("http://localhost:8080{path}"));
    cmd.output().expect("run curl")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dashboard_toml(socket: &Path) -> String {
    format!("[dashboard]\nsocket = \"{}\"\n", socket.display())
}

#[test]
fn the_admin_uid_sees_the_dashboard_on_the_socket_and_others_do_not() {
    let tmp = temp_dir("dash-sock");
    let socket = tmp.path().join("dashboard.sock");
    let server = Server::start(tmp.path(), &dashboard_toml(&socket));

    let meta = std::fs::symlink_metadata(&socket).expect("the socket exists");
    assert_eq!(meta.mode() & 0o777, 0o600, "the socket's mode");
    assert_eq!(meta.uid(), harness::bin::my_uid());

    // The same uid: the overview, whatever Host the forwarding browser sends.
    for host in ["localhost:8080", "dashboard.example:8080"] {
        let out = curl(&socket, "/dashboard/api/overview", host, None);
        let text = stdout(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{host}: {text}");
        assert!(text.contains("\"trust_domain\":\"example.org\""), "{text}");
        assert!(
            text.contains("Content-Security-Policy: default-src 'none'"),
            "{text}"
        );
    }
    let page = stdout(&curl(&socket, "/", "localhost:8080", None));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    // Only the dashboard is served here.
    let metrics = stdout(&curl(&socket, "/metrics", "localhost:8080", None));
    assert!(metrics.starts_with("HTTP/1.1 404"), "{metrics}");

    // Another uid: the 0600 socket in a 0700 directory keeps it out.
    let out = curl(
        &socket,
        "/dashboard/api/overview",
        "localhost",
        Some(NOBODY),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains("trust_domain"), "{}", stdout(&out));

    // Loosened by hand, the modes no longer keep it out: the uid check does.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = curl(
        &socket,
        "/dashboard/api/overview",
        "localhost",
        Some(NOBODY),
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("HTTP/1.1 403"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("uid 65534 may not see the dashboard"),
        "{text}"
    );
    assert!(!text.contains("trust_domain"), "{text}");
    drop(server);
}

#[test]
fn a_bad_socket_path_is_one_line_naming_the_key() {
    let tmp = temp_dir("dash-sock-bad");
    for (name, socket, needle) in [
        (
            "relative",
            "dashboard.sock".to_string(),
            "must be an absolute path",
        ),
        (
            "missing",
            tmp.path()
                .join("absent/dashboard.sock")
                .display()
                .to_string(),
            "does not exist",
        ),
    ] {
        let dir = tmp.path().join(name);
        let toml = ServerToml::new(&dir).extra(&format!("[dashboard]\nsocket = \"{socket}\"\n"));
        let out = run_role("server", &toml.write());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("dashboard.socket"))
            .unwrap_or_else(|| panic!("{name}: no line names dashboard.socket: {stderr}"));
        assert!(line.contains(needle), "{name}: {line}");
        assert!(
            !tmp.path().join("absent").exists(),
            "the directory is not created"
        );
    }
}
