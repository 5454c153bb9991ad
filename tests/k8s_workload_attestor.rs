//! The k8s workload attestor end to end: a real `herald server run` and
//! `herald agent run` with `[workload_attestors.k8s]`, the `spiffe` crate
//! as the workload, and a kubelet played by this test process: HTTPS on a
//! loopback port with a certificate for `localhost` from a test CA, the
//! bearer token checked, `GET /pods` answered with the recorded PodList of
//! `tests/fixtures/kubelet/pods.json`.
//!
//! The agent learns the caller's pid from SO_PEERCRED, so the caller is
//! this test process. Its cgroup file is given through the attestor's
//! `proc_root`: a temp dir holding `<our pid>/cgroup` in containerd's
//! cgroup v2 format, naming the `web` pod's `app` container of the fixture.
//! Our real `/proc/<pid>` still serves the unix attestor and the pid-reuse
//! check around the cgroup read.

mod harness;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::cluster::{Agent, Server};
use harness::web::WebCa;
use harness::workload::{client, rt, wait_for_svid};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.agent-token.sig";
const WEB_POD_UID: &str = "6f3c1a2e-8d4b-4c7e-9a1f-2b5d7e9c0a13";

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A kubelet's `/pods` on HTTPS. The first `hide_for` answers (all, if
/// `None`) leave the web pod out, as a kubelet does before it has synced a
/// new pod. Counts the requests it answers with a pod list.
struct Kubelet {
    port: u16,
    served: Arc<AtomicUsize>,
}

impl Kubelet {
    /// The secure port (`tls`: the server's certificate; the token is
    /// required) or, without `tls`, the read-only port (no authentication).
    async fn start(tls: Option<Arc<rustls::ServerConfig>>, hide_for: Option<usize>) -> Kubelet {
        let full: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixture("kubelet/pods.json")).unwrap()).unwrap();
        let mut hidden = full.clone();
        hidden["items"]
            .as_array_mut()
            .unwrap()
            .retain(|p| p["metadata"]["uid"] != WEB_POD_UID);
        let pods = PodLists {
            full: Bytes::from(serde_json::to_vec(&full).unwrap()),
            hidden: Bytes::from(serde_json::to_vec(&hidden).unwrap()),
            hide_for,
            token: tls.is_some(),
            served: Arc::new(AtomicUsize::new(0)),
        };
        let served = pods.served.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, pods) = (acceptor.clone(), pods.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve(tcp, pods).await,
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                serve(tls, pods).await
                            }
                        }
                    }
                });
            }
        });
        Kubelet { port, served }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// What the kubelet serves, and how many pod lists it has served.
#[derive(Clone)]
struct PodLists {
    full: Bytes,
    /// The list without the web pod.
    hidden: Bytes,
    hide_for: Option<usize>,
    /// Whether the bearer token is required (the secure port).
    token: bool,
    served: Arc<AtomicUsize>,
}

/// HTTP/1.1 on one connection, as the kubelet speaks it.
async fn serve<S>(io: S, pods: PodLists)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let pods = pods.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(req, &pods)) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// The kubelet's answer: 401 `Unauthorized` without the agent's token (on
/// the secure port), 404 for another path, else the pod list.
fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    pods: &PodLists,
) -> hyper::Response<Full<Bytes>> {
    let reply = |status: u16, ctype: &str, body: Bytes| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(body))
            .unwrap()
    };
    let text = "text/plain; charset=utf-8";
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if pods.token && auth != Some(&format!("Bearer {TOKEN}")) {
        return reply(401, text, Bytes::from("Unauthorized"));
    }
    if req.method() != hyper::Method::GET || req.uri().path() != "/pods" {
        return reply(404, text, Bytes::from("404 page not found"));
    }
    let n = pods.served.fetch_add(1, Ordering::SeqCst) + 1;
    let body = match pods.hide_for {
        Some(k) if n > k => pods.full.clone(),
        _ => pods.hidden.clone(),
    };
    reply(200, "application/json", body)
}

/// The attestor's keys for `kubelet`'s secure port, trusting `ca_path`;
/// writes the token file in `dir`.
fn secure(kubelet: &Kubelet, ca_path: &Path, dir: &Path) -> String {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    format!(
        "kubelet_secure_port = {}\nkubelet_ca_path = \"{}\"\ntoken_path = \"{}\"\n\
         node_name = \"localhost\"\n",
        kubelet.port,
        ca_path.display(),
        token.display(),
    )
}

/// One test's world: the kubelet, a server, an agent with the k8s
/// attestor, and this process's cgroup file under the attestor's
/// proc_root. Fields drop in order: the processes before their files.
struct Case {
    agent: Agent,
    server: Server,
    agent_id: String,
    kubelet: Kubelet,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Case {
    /// The secure port with a certificate the agent trusts.
    fn secure(hide_for: Option<usize>, cgroup_fixture: &str, attempts: u32) -> Case {
        let ca = WebCa::new();
        Case::start(Some(&ca), hide_for, cgroup_fixture, attempts, |k, dir| {
            secure(k, &ca.ca_path, dir)
        })
    }

    /// The kubelet (HTTPS with `ca`'s certificate, or plain HTTP), its
    /// attestor keys from `keys`, this process in `cgroup_fixture`.
    fn start(
        ca: Option<&WebCa>,
        hide_for: Option<usize>,
        cgroup_fixture: &str,
        attempts: u32,
        keys: impl FnOnce(&Kubelet, &Path) -> String,
    ) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let kubelet = rt.block_on(Kubelet::start(ca.map(WebCa::server_config), hide_for));
        let server = Server::start(&dir.path().join("server"), "");
        let proc_root = dir.path().join("proc");
        let mine = proc_root.join(std::process::id().to_string());
        std::fs::create_dir_all(&mine).unwrap();
        let cgroup = fixture(&format!("cgroup/{cgroup_fixture}"));
        std::fs::copy(cgroup, mine.join("cgroup")).unwrap();
        let k8s = format!(
            "[workload_attestors.k8s]\n{}max_poll_attempts = {attempts}\n\
             poll_retry_interval = \"50ms\"\nproc_root = \"{}\"\n",
            keys(&kubelet, dir.path()),
            proc_root.display()
        );
        let (join, agent_id) = server.join_token();
        let config = server
            .agent_toml(&dir.path().join("agent"), Some(&join))
            .extra(&k8s)
            .write();
        let agent = Agent::start(&config);
        Case {
            agent,
            server,
            agent_id,
            kubelet,
            rt,
            dir,
        }
    }

    /// An entry for `id` under the agent, with `selectors` besides this
    /// process's `unix:uid` (which alone would not tell pods apart).
    fn entry(&self, id: &str, selectors: &[&str]) {
        let flags: Vec<&str> = selectors.iter().flat_map(|s| ["--selector", s]).collect();
        self.server.create_entry(id, &self.agent_id, &flags);
    }

    /// The SPIFFE IDs of this process's SVIDs, once it has one.
    fn svids(&self) -> Vec<String> {
        self.rt.block_on(async {
            let c = client(&self.agent.socket).await;
            wait_for_svid(&c).await;
            let ctx = c.fetch_x509_context().await.unwrap();
            ctx.svids()
                .iter()
                .map(|s| s.spiffe_id().to_string())
                .collect()
        })
    }

    /// The agent's log line on this process's failed attestation.
    fn refused(&mut self) -> String {
        self.rt.block_on(async {
            let c = client(&self.agent.socket).await;
            let err = c.fetch_x509_svid().await.expect_err("no SVID");
            assert!(err.to_string().contains("attestation failed"), "{err}");
        });
        self.agent
            .proc
            .wait_for_line("workload attestation failed", Duration::from_secs(10))
    }
}

const WEB: &str = "spiffe://example.org/ns/shop/sa/web";

#[test]
fn a_pod_gets_the_svid_of_its_namespace_service_account_and_label() {
    let case = Case::secure(Some(0), "containerd-systemd-v2.txt", 5);
    case.entry(WEB, &["k8s:ns:shop", "k8s:sa:web", "k8s:pod-label:app:web"]);
    // Another pod's identity on the same node: not ours.
    case.entry(
        "spiffe://example.org/ns/batch/sa/default",
        &["k8s:ns:batch"],
    );
    assert_eq!(case.svids(), [WEB], "only the web pod's identity");
    assert!(case.kubelet.served() >= 1);
}

#[test]
fn a_pod_the_kubelet_lists_late_is_retried_until_it_appears() {
    // Three answers without the pod; the attestation retries (up to 20).
    let case = Case::secure(Some(3), "containerd-systemd-v2.txt", 20);
    case.entry(WEB, &["k8s:ns:shop", "k8s:container-name:app"]);
    assert_eq!(case.svids(), [WEB]);
    // The answers without the pod, then the one with it, in one attestation
    // at least (none can give up before the fourth, as 20 are allowed).
    let served = case.kubelet.served();
    assert!(served >= 4, "{served} pod list requests");
}

#[test]
fn a_pod_the_kubelet_never_lists_fails_naming_the_step() {
    let mut case = Case::secure(None, "containerd-systemd-v2.txt", 3);
    case.entry(WEB, &["k8s:ns:shop"]);
    let line = case.refused();
    let want = format!(
        "pod {WEB_POD_UID} not in the kubelet's pod list (https://localhost:{}/pods) after 3 attempts",
        case.kubelet.port
    );
    assert!(line.contains(&want), "{line}");
    assert_eq!(case.kubelet.served(), 3);
}

#[test]
fn a_process_outside_any_pod_keeps_its_unix_selectors() {
    let case = Case::secure(Some(0), "not-pod-session-v2.txt", 3);
    let id = "spiffe://example.org/host/tool";
    case.server.create_entry(id, &case.agent_id, &[]);
    assert_eq!(case.svids(), [id]);
    assert_eq!(
        case.kubelet.served(),
        0,
        "the kubelet is not asked about a non-pod"
    );
}

#[test]
fn a_refused_token_fails_with_the_kubelet_s_answer() {
    let mut case = Case::secure(Some(0), "containerd-systemd-v2.txt", 3);
    case.entry(WEB, &["k8s:ns:shop"]);
    // The token is read on every request (projected tokens rotate).
    std::fs::write(case.dir.path().join("token"), "expired").unwrap();
    let line = case.refused();
    let want = format!(
        "the kubelet answered 401 to GET https://localhost:{}/pods: Unauthorized",
        case.kubelet.port
    );
    assert!(line.contains(&want), "{line}");
    assert!(
        !line.contains("expired"),
        "the token stays out of the log: {line}"
    );
}

#[test]
fn the_read_only_port_is_plain_http_without_a_token() {
    let case = Case::start(None, Some(0), "crio-systemd-hybrid.txt", 3, |k, _| {
        format!("kubelet_read_only_port = {}\n", k.port)
    });
    // The CRI-O pod of the fixture: cri-o://<id>, a StatefulSet's pod.
    let id = "spiffe://example.org/ns/batch/worker";
    case.entry(id, &["k8s:ns:batch", "k8s:pod-owner:StatefulSet:worker"]);
    assert_eq!(case.svids(), [id]);
    assert!(case.kubelet.served() >= 1);
}

#[test]
fn a_kubelet_certificate_from_another_ca_is_refused() {
    let (ca, other) = (WebCa::new(), WebCa::new());
    let mut case = Case::start(
        Some(&ca),
        Some(0),
        "containerd-systemd-v2.txt",
        3,
        |k, dir| secure(k, &other.ca_path, dir),
    );
    case.entry(WEB, &["k8s:ns:shop"]);
    let line = case.refused();
    let want = format!(
        "TLS handshake with the kubelet at https://localhost:{}/pods failed",
        case.kubelet.port
    );
    assert!(line.contains(&want), "{line}");
    assert_eq!(case.kubelet.served(), 0);
}
