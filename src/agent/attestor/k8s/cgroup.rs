//! From a process's `/proc/<pid>/cgroup` to the pod and container it runs
//! in, for cgroup v1 (one line per hierarchy) and v2 (the `0::` line).
//!
//! Each line is `hierarchy-ID:controllers:path`. The kubelet puts a pod's
//! containers under a pod cgroup named for the pod's UID, and the runtime
//! names the container's cgroup after its 64-hex-digit ID:
//!
//! - cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>` (containerd,
//!   CRI-O, Docker);
//! - systemd driver: `/kubepods.slice/kubepods-burstable.slice/
//!   kubepods-burstable-pod<uid with _>.slice/<prefix>-<id>.scope`, where the
//!   prefix is `cri-containerd`, `crio` or `docker`, and systemd's slice
//!   names turn the UID's dashes into underscores;
//! - containerd's `slice:prefix:id` form;
//! - any of these below a prefix (a kind node's `/docker/<node>/...`) or
//!   relative to the reader's cgroup namespace (`/../../kubepods-...`).
//!
//! As SPIRE's k8s attestor does since cgroup namespaces made the position of
//! `kubepods` unreliable, the parser looks for a `pod<uid>` path segment
//! (the UID's five groups of hex digits separated by any punctuation) and a
//! container ID as the path's last token. Unlike SPIRE, the container ID
//! must be 64 lowercase hex digits (what all three runtimes write), so a
//! process in a pod-level cgroup (`...pod<uid>.slice`) is not taken for a
//! container named `slice`.

/// A container of a pod, as the cgroup path names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainer {
    /// The pod's UID in Kubernetes' form (dashes).
    pub pod_uid: String,
    /// The runtime's container ID, without the `<runtime>://` of the kubelet's
    /// `containerID` field.
    pub container_id: String,
}

/// Why a cgroup file was not understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CgroupError {
    /// A line is not `id:controllers:path`.
    #[error("cgroup line {line} is not hierarchy-ID:controllers:path")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// Different lines name different containers or pods.
    #[error("the cgroups name two containers: {first:?} and {second:?}")]
    Ambiguous {
        /// The first one found.
        first: String,
        /// The one that disagrees.
        second: String,
    },
}

/// The pod and container of a cgroup file's text; `None` if no line names
/// one (the process is not in a Kubernetes pod's container).
pub fn parse(text: &str) -> Result<Option<PodContainer>, CgroupError> {
    let mut found: Option<PodContainer> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CgroupError::Malformed { line: i + 1 });
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CgroupError::Malformed { line: i + 1 });
        }
        let Some(candidate) = from_path(path) else {
            continue;
        };
        match &found {
            None => found = Some(candidate),
            Some(f) if *f == candidate => {}
            Some(f) => {
                let describe =
                    |p: &PodContainer| format!("pod {} container {}", p.pod_uid, p.container_id);
                return Err(CgroupError::Ambiguous {
                    first: describe(f),
                    second: describe(&candidate),
                });
            }
        }
    }
    Ok(found)
}

/// The pod and container named by one cgroup path, if any.
fn from_path(path: &str) -> Option<PodContainer> {
    let path = path.strip_suffix(".scope").unwrap_or(path);
    let sep = path.rfind(|c: char| c.is_ascii_punctuation())?;
    let container_id = &path[sep + 1..];
    if container_id.len() != 64 || !container_id.bytes().all(is_lower_hex) {
        return None;
    }
    let head = &path[..sep];
    // The innermost pod segment: the last `pod<uid>` whose UID is followed
    // by punctuation or by the separator before the container ID.
    let mut search_end = head.len();
    while let Some(at) = head[..search_end].rfind("pod") {
        search_end = at;
        let preceded = head[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_punctuation());
        let rest = &head[at + 3..];
        let Some(uid) = rest.get(..36) else {
            continue;
        };
        let followed = rest[36..]
            .chars()
            .next()
            .is_none_or(|c| c.is_ascii_punctuation());
        if preceded && followed {
            if let Some(pod_uid) = canonical_uid(uid) {
                return Some(PodContainer {
                    pod_uid,
                    container_id: container_id.to_string(),
                });
            }
        }
    }
    None
}

/// A UID as a cgroup name writes it (`8-4-4-4-12` hex digits, any
/// punctuation between the groups) in Kubernetes' form, with dashes.
fn canonical_uid(uid: &str) -> Option<String> {
    let mut out = String::with_capacity(36);
    for (i, c) in uid.chars().enumerate() {
        match i {
            8 | 13 | 18 | 23 if c.is_ascii_punctuation() => out.push('-'),
            8 | 13 | 18 | 23 => return None,
            _ if c.is_ascii_hexdigit() => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const A: &str = "4c1f0e9a7b2d83e6f5a0c9d1b7e24f68a3c5d09e1f2b4a6c8d0e7f9a1b3c5d7e";
    const B: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
    const C: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    const D: &str = "d41d8cd98f00b204e9800998ecf8427ed41d8cd98f00b204e9800998ecf8427e";
    const U: &str = "6f3c1a2e-8d4b-4c7e-9a1f-2b5d7e9c0a13";
    const V: &str = "b2d47e10-5c3a-4f8e-a6d9-17c0e3f5a824";

    fn fixture(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cgroup")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn pc(uid: &str, id: &str) -> Option<PodContainer> {
        Some(PodContainer {
            pod_uid: uid.into(),
            container_id: id.into(),
        })
    }

    /// Every fixture file, with what it must give.
    #[test]
    fn every_fixture_gives_its_pod_and_container() {
        let cases = [
            ("containerd-systemd-v2.txt", pc(U, A)),
            ("containerd-cgroupfs-v2.txt", pc(U, A)),
            ("containerd-cgroupfs-v1.txt", pc(U, A)),
            ("containerd-systemd-hybrid.txt", pc(V, B)),
            ("containerd-cgroupns-v2.txt", pc(V, B)),
            ("containerd-slice-colon-v1.txt", pc(V, B)),
            ("crio-systemd-hybrid.txt", pc(V, B)),
            ("crio-systemd-v2.txt", pc(U, C)),
            ("docker-systemd-v1.txt", pc(U, D)),
            ("docker-cgroupfs-v1.txt", pc(V, D)),
            ("kind-nested-v1.txt", pc(V, A)),
            ("not-pod-session-v2.txt", None),
            ("not-pod-docker-v2.txt", None),
            ("not-pod-service-v1.txt", None),
            ("not-pod-root-v2.txt", None),
            ("not-pod-pod-level-v2.txt", None),
        ];
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".txt") && !n.starts_with("conflict"))
            .collect();
        files.sort();
        let mut named: Vec<String> = cases.iter().map(|(n, _)| n.to_string()).collect();
        named.sort();
        assert_eq!(files, named, "every fixture has a case");
        for (name, want) in cases {
            assert_eq!(parse(&fixture(name)), Ok(want), "{name}");
        }
    }

    #[test]
    fn two_containers_are_refused() {
        let err = parse(&fixture("conflict-two-containers-v1.txt")).unwrap_err();
        assert!(matches!(err, CgroupError::Ambiguous { .. }), "{err}");
        assert!(
            err.to_string().contains(A) && err.to_string().contains(B),
            "{err}"
        );
    }

    #[test]
    fn near_misses_are_not_pods() {
        for path in [
            // A short or upper-case container ID.
            format!("/kubepods/pod{U}/{}", &A[..63]),
            format!("/kubepods/pod{U}/{}", A.to_uppercase()),
            // No punctuation before `pod`, or a UID of the wrong shape.
            format!("/kubepodspod{U}/{A}"),
            format!("/kubepods/pod{}/{A}", U.replace('-', "")),
            format!("/kubepods/pod{}x/{A}", &U[..35]),
            // A UID followed by more than punctuation.
            format!("/kubepods/pod{U}x/{A}"),
            // A container ID alone.
            format!("/{A}"),
        ] {
            assert_eq!(parse(&format!("0::{path}\n")), Ok(None), "{path}");
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert_eq!(parse("garbage\n"), Err(CgroupError::Malformed { line: 1 }));
        assert_eq!(
            parse("0::/\nx::/\n"),
            Err(CgroupError::Malformed { line: 2 })
        );
        assert_eq!(parse(""), Ok(None));
    }
}
