//! A local user who prepares a socket's directory before Herald starts must
//! not get to redirect or swap the socket (issue 10, found by reading): a
//! directory owned by someone else, writable by others, or a symlink is
//! refused with the path named, for the server's admin socket and the
//! agent's Workload API socket alike.

mod harness;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use harness::cluster::{run_role, Server};
use harness::config::ServerToml;

/// The ways a hostile local user could have prepared `dir`.
fn hostile_dirs(root: &Path) -> Vec<(std::path::PathBuf, &'static str)> {
    let theirs = root.join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The tests run as root in CI; nobody (65534) stands for the other user.
    rustix::fs::chown(&theirs, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();

    let open = root.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();

    let target = root.join("target");
    std::fs::create_dir_all(&target).unwrap();
    let link = root.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    vec![
        (theirs, "belongs to uid 65534"),
        (open, "has mode 777"),
        (link, "is not a directory"),
    ]
}

#[test]
fn the_server_refuses_an_admin_socket_directory_it_does_not_control() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("needs root to hand a directory to another uid; CI runs as root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (dir, why) in hostile_dirs(&tmp.path().join("dirs")) {
        let socket = dir.join("admin.sock");
        let toml = ServerToml::new(&tmp.path().join(format!("server-{}", why.len())))
            .extra(&format!("admin_socket = \"{}\"\n", socket.display()));
        // `extra` comes after the harness's own admin_socket line; TOML
        // refuses a key twice, so write the file by hand without it.
        let text = toml
            .render()
            .lines()
            .filter(|l| !l.starts_with("admin_socket") || l.contains(&*socket.to_string_lossy()))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::create_dir_all(toml.dir()).unwrap();
        std::fs::write(toml.path(), text).unwrap();
        let out = run_role("server", &toml.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", dir.display());
        assert!(
            err.contains(why) && err.contains(&*dir.to_string_lossy()),
            "{}: {err}",
            dir.display()
        );
        assert!(!socket.exists(), "no socket was left in {}", dir.display());
    }
}

#[test]
fn the_agent_refuses_a_workload_socket_directory_it_does_not_control() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("needs root to hand a directory to another uid; CI runs as root");
        return;
    }
    let server = Server::start_temp();
    let tmp = tempfile::tempdir().unwrap();
    for (dir, why) in hostile_dirs(&tmp.path().join("dirs")) {
        let (token, _) = server.join_token();
        let agent_dir = tmp.path().join(format!("agent-{}", why.len()));
        let config = server.agent_config(&agent_dir, Some(&token));
        let socket = dir.join("api.sock");
        let text = std::fs::read_to_string(&config).unwrap();
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("socket_path") {
                    format!("socket_path = \"{}\"\n", socket.display())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&config, text).unwrap();
        let out = run_role("agent", &config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", dir.display());
        assert!(
            err.contains(why) && err.contains(&*dir.to_string_lossy()),
            "{}: {err}",
            dir.display()
        );
        assert!(!socket.exists(), "no socket was left in {}", dir.display());
    }
}
