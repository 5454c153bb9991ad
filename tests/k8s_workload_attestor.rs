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

/// A server, an agent with the k8s attestor (`kubelet_keys` say how it
/// reaches the kubelet), and this process's cgroup file (`cgroup_fixture`)
/// under the attestor's proc_root.
fn start(
    dir: &Path,
    kubelet_keys: &str,
    cgroup_fixture: &str,
    attempts: u32,
) -> (Server, Agent, String) {
    let server = Server::start(&dir.join("server"), "");
    let proc_root = dir.join("proc");
    let mine = proc_root.join(std::process::id().to_string());
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::copy(
        fixture(&format!("cgroup/{cgroup_fixture}")),
        mine.join("cgroup"),
    )
    .unwrap();
    let k8s = format!(
        "[workload_attestors.k8s]\n{kubelet_keys}max_poll_attempts = {attempts}\n\
         poll_retry_interval = \"50ms\"\nproc_root = \"{}\"\n",
        proc_root.display()
    );
    let (join, agent_id) = server.join_token();
    let config = server
        .agent_toml(&dir.join("agent"), Some(&join))
        .extra(&k8s)
        .write();
    let agent = Agent::start(&config);
    (server, agent, agent_id)
}

fn create(server: &Server, id: &str, parent: &str, selectors: &[&str]) {
    let mut args = vec!["entry", "create", "--spiffe-id", id, "--parent-id", parent];
    for s in selectors {
        args.extend(["--selector", s]);
    }
    server.cli_json(&args);
}

#[test]
fn a_pod_gets_the_svid_of_its_namespace_service_account_and_label() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ca = WebCa::new();
    let kubelet = rt.block_on(Kubelet::start(Some(ca.server_config()), Some(0)));
    let (server, agent, agent_id) = start(
        dir.path(),
        &secure(&kubelet, &ca.ca_path, dir.path()),
        "containerd-systemd-v2.txt",
        5,
    );
    let web = "spiffe://example.org/ns/shop/sa/web";
    create(
        &server,
        web,
        &agent_id,
        &["k8s:ns:shop", "k8s:sa:web", "k8s:pod-label:app:web"],
    );
    // Another pod's identity on the same node: not ours.
    create(
        &server,
        "spiffe://example.org/ns/batch/sa/default",
        &agent_id,
        &["k8s:ns:batch"],
    );
    rt.block_on(async {
        let c = client(&agent.socket).await;
        let svid = wait_for_svid(&c).await;
        assert_eq!(svid.spiffe_id().to_string(), web);
        let ctx = c.fetch_x509_context().await.unwrap();
        let ids: Vec<String> = ctx
            .svids()
            .iter()
            .map(|s| s.spiffe_id().to_string())
            .collect();
        assert_eq!(ids, [web], "only the web pod's identity");
    });
    assert!(kubelet.served() >= 1);
    drop(server);
}

#[test]
fn a_pod_the_kubelet_lists_late_is_retried_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ca = WebCa::new();
    // Three answers without the pod; the attestation retries (up to 20).
    let kubelet = rt.block_on(Kubelet::start(Some(ca.server_config()), Some(3)));
    let (server, agent, agent_id) = start(
        dir.path(),
        &secure(&kubelet, &ca.ca_path, dir.path()),
        "containerd-systemd-v2.txt",
        20,
    );
    let web = "spiffe://example.org/ns/shop/sa/web";
    create(
        &server,
        web,
        &agent_id,
        &["k8s:ns:shop", "k8s:container-name:app"],
    );
    rt.block_on(async {
        let c = client(&agent.socket).await;
        assert_eq!(wait_for_svid(&c).await.spiffe_id().to_string(), web);
    });
    // The answers without the pod, then the one with it, in one attestation
    // at least (none can give up before the fourth, as 20 are allowed).
    assert!(
        kubelet.served() >= 4,
        "{} pod list requests",
        kubelet.served()
    );
    drop(server);
}

#[test]
fn a_pod_the_kubelet_never_lists_fails_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ca = WebCa::new();
    let kubelet = rt.block_on(Kubelet::start(Some(ca.server_config()), None));
    let (server, mut agent, agent_id) = start(
        dir.path(),
        &secure(&kubelet, &ca.ca_path, dir.path()),
        "containerd-systemd-v2.txt",
        3,
    );
    create(
        &server,
        "spiffe://example.org/ns/shop/sa/web",
        &agent_id,
        &["k8s:ns:shop"],
    );
    rt.block_on(async {
        let c = client(&agent.socket).await;
        let err = c.fetch_x509_svid().await.expect_err("no pod, no SVID");
        assert!(err.to_string().contains("attestation failed"), "{err}");
    });
    let line = agent
        .proc
        .wait_for_line("workload attestation failed", Duration::from_secs(10));
    let want = format!("pod {WEB_POD_UID} not in the kubelet's pod list (https://localhost:{}/pods) after 3 attempts", kubelet.port);
    assert!(line.contains(&want), "{line}");
    assert_eq!(kubelet.served(), 3);
    drop(server);
}

#[test]
fn a_process_outside_any_pod_keeps_its_unix_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ca = WebCa::new();
    let kubelet = rt.block_on(Kubelet::start(Some(ca.server_config()), Some(0)));
    let (server, agent, agent_id) = start(
        dir.path(),
        &secure(&kubelet, &ca.ca_path, dir.path()),
        "not-pod-session-v2.txt",
        3,
    );
    let id = "spiffe://example.org/host/tool";
    server.create_entry(id, &agent_id, &[]);
    rt.block_on(async {
        let c = client(&agent.socket).await;
        assert_eq!(wait_for_svid(&c).await.spiffe_id().to_string(), id);
    });
    assert_eq!(
        kubelet.served(),
        0,
        "the kubelet is not asked about a non-pod"
    );
    drop(server);
}

#[test]
fn a_refused_token_fails_with_the_kubelet_s_answer() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let ca = WebCa::new();
    let kubelet = rt.block_on(Kubelet::start(Some(ca.server_config()), Some(0)));
    let (server, mut agent, agent_id) = start(
        dir.path(),
        &secure(&kubelet, &ca.ca_path, dir.path()),
        "containerd-systemd-v2.txt",
        3,
    );
    create(
        &server,
        "spiffe://example.org/ns/shop/sa/web",
        &agent_id,
        &["k8s:ns:shop"],
    );
    // The token is read on every request (projected tokens rotate).
    std::fs::write(dir.path().join("token"), "expired").unwrap();
    rt.block_on(async {
        let c = client(&agent.socket).await;
        assert!(c.fetch_x509_svid().await.is_err());
    });
    let line = agent
        .proc
        .wait_for_line("workload attestation failed", Duration::from_secs(10));
    let want = format!(
        "the kubelet answered 401 to GET https://localhost:{}/pods: Unauthorized",
        kubelet.port
    );
    assert!(line.contains(&want), "{line}");
    assert!(
        !line.contains("expired"),
        "the token stays out of the log: {line}"
    );
    drop(server);
}

#[test]
fn the_read_only_port_is_plain_http_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let kubelet = rt.block_on(Kubelet::start(None, Some(0)));
    let keys = format!("kubelet_read_only_port = {}\n", kubelet.port);
    let (server, agent, agent_id) = start(dir.path(), &keys, "crio-systemd-hybrid.txt", 3);
    // The CRI-O pod of the fixture: cri-o://<id>, a StatefulSet's pod.
    let id = "spiffe://example.org/ns/batch/worker";
    create(
        &server,
        id,
        &agent_id,
        &["k8s:ns:batch", "k8s:pod-owner:StatefulSet:worker"],
    );
    rt.block_on(async {
        let c = client(&agent.socket).await;
        assert_eq!(wait_for_svid(&c).await.spiffe_id().to_string(), id);
    });
    assert!(kubelet.served() >= 1);
    drop(server);
}

#[test]
fn a_kubelet_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (ca, other) = (WebCa::new(), WebCa::new());
    let kubelet = rt.block_on(Kubelet::start(Some(ca.server_config()), Some(0)));
    let keys = secure(&kubelet, &other.ca_path, dir.path());
    let (server, mut agent, agent_id) = start(dir.path(), &keys, "containerd-systemd-v2.txt", 3);
    create(
        &server,
        "spiffe://example.org/ns/shop/sa/web",
        &agent_id,
        &["k8s:ns:shop"],
    );
    rt.block_on(async {
        let c = client(&agent.socket).await;
        assert!(c.fetch_x509_svid().await.is_err());
    });
    let line = agent
        .proc
        .wait_for_line("workload attestation failed", Duration::from_secs(10));
    let want = format!(
        "TLS handshake with the kubelet at https://localhost:{}/pods failed",
        kubelet.port
    );
    assert!(line.contains(&want), "{line}");
    assert_eq!(kubelet.served(), 0);
    drop(server);
}
