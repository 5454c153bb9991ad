//! A Kubernetes API server as k8s_psat node attestation talks to it, played
//! by the test process: HTTPS on a loopback port with a `localhost`
//! certificate from a test CA, the caller's bearer token required (the
//! Herald server's own service-account token), and the request and answer
//! shapes of `tests/fixtures/k8s/`:
//!
//! - `POST /apis/authentication.k8s.io/v1/tokenreviews` (201): a token the
//!   test admitted authenticates as its service account with the pod and
//!   node in `status.user.extra`, for the audiences it shares with
//!   `spec.audiences`; any other token is unauthenticated with the API
//!   server's reason, as for a pod that was deleted;
//! - `GET /api/v1/nodes/{name}` and `GET /api/v1/namespaces/{ns}/pods/{name}`
//!   (200, or a 404 `Status`);
//! - `GET /openid/v1/jwks`, the service-account issuer's keys.
//!
//! It never looks inside a token: admitting one is the test's decision.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use herald::k8s_psat::review::{EXTRA_NODE_NAME, EXTRA_NODE_UID, EXTRA_POD_NAME, EXTRA_POD_UID};
use herald::k8s_psat::test_tokens::TokenSpec;

use super::web::WebCa;

/// The Herald server's service-account token, as this API server expects it.
pub const SERVER_SA_TOKEN: &str = "herald-server-sa-token.not-a-real-jwt";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[derive(Default)]
struct State {
    /// Admitted tokens: their audiences and `status.user`.
    tokens: HashMap<String, (Vec<String>, Value)>,
    nodes: HashMap<String, Value>,
    pods: HashMap<(String, String), Value>,
    jwks: Option<String>,
    /// `METHOD path` of every request answered.
    requests: Vec<String>,
}

/// The API server; it serves until the test's runtime stops.
pub struct KubeApi {
    pub port: u16,
    pub ca: WebCa,
    /// The server's token file (`kube_api_token_path`).
    pub token_path: PathBuf,
    state: Arc<Mutex<State>>,
}

impl KubeApi {
    /// Starts on `rt`, writing the server's token file into `dir`.
    pub fn start(rt: &tokio::runtime::Runtime, dir: &Path) -> KubeApi {
        std::fs::create_dir_all(dir).unwrap();
        let token_path = dir.join("server-sa-token");
        std::fs::write(&token_path, format!("{SERVER_SA_TOKEN}\n")).unwrap();
        let ca = WebCa::new();
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = state.clone();
        rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, state).await;
                    }
                });
            }
        });
        KubeApi {
            port,
            ca,
            token_path,
            state,
        }
    }

    /// `https://localhost:<port>`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The TOML keys of a cluster verified by this API server.
    pub fn cluster_keys(&self) -> String {
        format!(
            "kube_api_url = \"{}\"\nkube_api_ca_path = \"{}\"\nkube_api_token_path = \"{}\"\n",
            self.url(),
            self.ca.ca_path.display(),
            self.token_path.display()
        )
    }

    /// Admits `token`, issued for the pod `spec` describes: reviews of it
    /// authenticate the pod's service account, as the API server does.
    pub fn admit(&self, token: &str, spec: &TokenSpec) {
        let mut extra = BTreeMap::new();
        if let Some((name, uid)) = &spec.pod {
            extra.insert(EXTRA_POD_NAME, json!([name]));
            extra.insert(EXTRA_POD_UID, json!([uid]));
        }
        if let Some((name, uid)) = &spec.node {
            extra.insert(EXTRA_NODE_NAME, json!([name]));
            extra.insert(EXTRA_NODE_UID, json!([uid]));
        }
        extra.insert(
            "authentication.kubernetes.io/credential-id",
            json!(["JTI=aed34954-b33a-4142-b1ec-389d6bbb4936"]),
        );
        let user = json!({
            "username": format!("system:serviceaccount:{}:{}", spec.namespace, spec.service_account),
            "uid": "14ee3fa4-a7e2-420f-9f9a-dbc4507c3798",
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", spec.namespace), "system:authenticated"],
            "extra": extra,
        });
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_string(), (vec![spec.audience.clone()], user));
    }

    /// Forgets `token`: reviews of it fail as for a deleted pod's.
    pub fn revoke(&self, token: &str) {
        self.state.lock().unwrap().tokens.remove(token);
    }

    /// A node, from `node.json` with this name, UID and labels.
    pub fn add_node(&self, name: &str, uid: &str, labels: &[(&str, &str)]) {
        let mut node = fixture("node.json");
        node["metadata"]["name"] = json!(name);
        node["metadata"]["uid"] = json!(uid);
        node["metadata"]["labels"] = labels_json(labels);
        self.state.lock().unwrap().nodes.insert(name.into(), node);
    }

    /// A pod, from `pod.json` with this name, UID, node and labels.
    pub fn add_pod(&self, ns: &str, name: &str, uid: &str, node: &str, labels: &[(&str, &str)]) {
        let mut pod = fixture("pod.json");
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["name"] = json!(name);
        pod["metadata"]["uid"] = json!(uid);
        pod["metadata"]["labels"] = labels_json(labels);
        pod["spec"]["nodeName"] = json!(node);
        self.state
            .lock()
            .unwrap()
            .pods
            .insert((ns.into(), name.into()), pod);
    }

    /// Serves `jwks` at `/openid/v1/jwks`.
    pub fn serve_jwks(&self, jwks: String) {
        self.state.lock().unwrap().jwks = Some(jwks);
    }

    /// `METHOD path` of every request answered so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn labels_json(labels: &[(&str, &str)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

async fn serve<S>(io: S, state: Arc<Mutex<State>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(answer(&parts, &body, &state))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn reply(status: u16, body: &Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A `Status` object, as the API server answers errors.
fn status(code: u16, reason: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    reply(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

fn answer(
    parts: &http::request::Parts,
    body: &[u8],
    state: &Mutex<State>,
) -> hyper::Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    let path = parts.uri.path().to_string();
    state.requests.push(format!("{} {path}", parts.method));
    if path == "/openid/v1/jwks" {
        // Served to anyone, as service-account issuer discovery is.
        return match &state.jwks {
            Some(j) => reply(200, &serde_json::from_str(j).unwrap()),
            None => status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        };
    }
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {SERVER_SA_TOKEN}")) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (parts.method.as_str(), segments.as_slice()) {
        ("POST", ["apis", "authentication.k8s.io", "v1", "tokenreviews"]) => {
            token_review(body, &state)
        }
        ("GET", ["api", "v1", "nodes", name]) => match state.nodes.get(*name) {
            Some(n) => reply(200, n),
            None => status(404, "NotFound", &format!("nodes \"{name}\" not found")),
        },
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            match state.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => reply(200, p),
                None => status(404, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

fn token_review(body: &[u8], state: &State) -> hyper::Response<Full<Bytes>> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return status(400, "BadRequest", "the request body is not JSON");
    };
    if request["kind"] != "TokenReview" || request["apiVersion"] != "authentication.k8s.io/v1" {
        return status(400, "BadRequest", "not a TokenReview");
    }
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let wanted: Vec<String> = serde_json::from_value(request["spec"]["audiences"].clone())
        .unwrap_or_else(|_| vec!["https://kubernetes.default.svc.cluster.local".into()]);
    let mut review = fixture("tokenreview-unauthenticated.json");
    review["spec"] = request["spec"].clone();
    match state.tokens.get(token) {
        None => {
            review["status"]["error"] =
                json!("[invalid bearer token, service account token has been invalidated]");
        }
        Some((audiences, user)) => {
            let shared: Vec<&String> = wanted.iter().filter(|a| audiences.contains(a)).collect();
            if shared.is_empty() {
                review["status"]["error"] = json!(format!(
                    "[invalid bearer token, token audiences {audiences:?} is invalid for the target audiences {wanted:?}]"
                ));
            } else {
                review["status"] =
                    json!({"authenticated": true, "user": user, "audiences": shared});
            }
        }
    }
    reply(201, &review)
}
