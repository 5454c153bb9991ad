//! `deploy/prometheus/` checked with the real tools of Debian's
//! `prometheus` package (which carries promtool; these tests fail, not
//! skip, without it):
//!
//! - the alert rules pass `promtool check rules` and their unit tests
//!   (`promtool test rules`), and every alert has a case where it fires
//!   and one where it stays quiet;
//! - the example configuration passes `promtool check config`;
//! - every dashboard query parses, and every metric the rules, their tests
//!   and the dashboard name is one docs/METRICS.md documents;
//! - a real Prometheus scrapes a real server and agent through their ops
//!   listeners: the agent's SVID count and the server's signing counter
//!   read back through the query API, every rule evaluates without error
//!   and stays quiet on a healthy trust domain, every dashboard query
//!   runs, and once the agent is gone its target-down alert is pending.

mod harness;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::dirs::temp_dir;
use harness::http::{get, query_escape};
use harness::ops::{loopback, start_with_ops};
use harness::process::Proc;
use harness::workload::{client, rt, wait_for_svid};
use serde_json::Value;

const RULES: &str = "deploy/prometheus/herald-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/herald-alerts.test.yml";
const CONFIG: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/prometheus/grafana-dashboard.json";
const METRICS_DOC: &str = "docs/METRICS.md";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Runs `tool args...` (promtool or prometheus); a missing tool is a
/// failure naming the package to install.
fn run_tool(tool: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}): install Debian's `prometheus` package (.ci/run does)")
    })
}

/// Runs promtool, failing with its output unless it succeeds.
#[track_caller]
fn promtool_ok(args: &[&str]) {
    let out = run_tool("promtool", args);
    assert!(
        out.status.success(),
        "promtool {args:?} exited {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_checks_the_alert_rules() {
    promtool_ok(&["check", "rules", repo_path(RULES).to_str().unwrap()]);
}

#[test]
fn promtool_unit_tests_pass() {
    promtool_ok(&["test", "rules", repo_path(RULE_TESTS).to_str().unwrap()]);
}

#[test]
fn promtool_checks_the_example_config() {
    promtool_ok(&["check", "config", repo_path(CONFIG).to_str().unwrap()]);
}

/// The alerting rules of the rules file by name, from its `- alert:`
/// lines: one name per rule (variants of an alert share its name).
fn alert_rules() -> Vec<String> {
    read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// The alerts the rules must define.
const ALERTS: &[&str] = &[
    "HeraldTargetDown",
    "HeraldServerNotReady",
    "HeraldAgentNotReady",
    "HeraldOutageBudgetLow",
    "HeraldSigningErrors",
    "HeraldCaRotationStuck",
    "HeraldAgentsLaggingOnBundle",
    "HeraldFederationStale",
];

#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let alerts: BTreeSet<String> = alert_rules().into_iter().collect();
    let wanted: BTreeSet<String> = ALERTS.iter().map(|a| a.to_string()).collect();
    assert_eq!(alerts, wanted, "the alerts of {RULES}");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    let mut current = None;
    for line in read(RULE_TESTS).lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts follows an alertname");
            if rest.trim() == "[]" {
                &mut quiet
            } else {
                &mut firing
            }
            .insert(name);
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no unit test where {alert} fires");
        assert!(
            quiet.contains(alert),
            "no unit test where {alert} stays quiet"
        );
    }
    let unknown: Vec<_> = firing
        .union(&quiet)
        .filter(|n| !alerts.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "unit tests for alerts that do not exist: {unknown:?}"
    );
    // Variants of one alert differ by their reason label: each fires in a test.
    let tests = read(RULE_TESTS);
    for reason in read(RULES)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("reason:"))
    {
        let reason = reason.trim();
        assert!(
            tests.contains(&format!("reason: {reason}")),
            "no unit test where reason {reason} fires"
        );
    }
}

/// Every `herald_…` metric name written in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("herald_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let len = text[at..].find(|c| !is_name(c)).unwrap_or(text.len() - at);
        names.insert(text[at..at + len].to_string());
    }
    names
}

/// Whether `name` is documented: itself, or a histogram's series.
fn documented(name: &str, docs: &BTreeSet<String>) -> bool {
    docs.contains(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|base| docs.contains(base)))
}

/// The dashboard's panels, those inside collapsed rows included.
fn dashboard_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            panels.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            panels.push(p);
        }
    }
    panels
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// Every (panel title, query) of the dashboard.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard_panels(dashboard) {
        let title = panel["title"].as_str().expect("a panel title").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target expr");
            queries.push((title.clone(), expr.to_string()));
        }
    }
    queries
}

/// A dashboard query with its variables given values, as Prometheus takes it.
fn concrete(expr: &str) -> String {
    let q = expr
        .replace("$__rate_interval", "1m")
        .replace("$server", ".+")
        .replace("$agent", ".+");
    assert!(
        !q.contains('$'),
        "a variable this test does not know in {expr}"
    );
    q
}

#[test]
fn every_metric_named_is_documented() {
    let docs = metric_names(&read(METRICS_DOC));
    assert!(
        docs.len() >= 20,
        "{METRICS_DOC} names too few metrics: {docs:?}"
    );
    let dashboard_text: String = dashboard_queries(&dashboard())
        .into_iter()
        .map(|(_, q)| q + "\n")
        .collect();
    for (what, text) in [
        (RULES, read(RULES)),
        (RULE_TESTS, read(RULE_TESTS)),
        (DASHBOARD, dashboard_text),
    ] {
        let used = metric_names(&text);
        assert!(used.len() >= 5, "{what} names too few metrics: {used:?}");
        let unknown: Vec<_> = used.iter().filter(|n| !documented(n, &docs)).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics {METRICS_DOC} does not document: {unknown:?}"
        );
    }
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_every_panel_asked_for() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "an old schemaVersion"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable: {vars:?}"
    );
    for panel in dashboard_panels(&d) {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !metric_names(expr).is_empty(),
                "panel {title}: {expr:?} names no Herald metric"
            );
        }
    }
    let used: BTreeSet<String> = dashboard_queries(&d)
        .iter()
        .flat_map(|(_, q)| metric_names(q))
        .collect();
    for wanted in [
        "herald_agent_outage_budget_seconds",
        "herald_server_svids_signed_total",
        "herald_server_signing_duration_seconds_bucket",
        "herald_server_node_api_requests_total",
        "herald_server_admin_api_requests_total",
        "herald_server_agents_connected",
        "herald_server_bundle_acknowledged_ratio",
        "herald_server_authority_expiry_seconds",
        "herald_server_federation_last_refresh_timestamp_seconds",
    ] {
        assert!(used.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn every_dashboard_query_parses() {
    // promtool parses PromQL offline only inside a rules file: each query
    // becomes a recording rule.
    let dir = temp_dir("dashboard-rules");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in dashboard_queries(&dashboard()).iter().enumerate() {
        let quoted = serde_json::to_string(&concrete(expr)).expect("a JSON string");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    let path = dir.path().join("dashboard-rules.yml");
    std::fs::write(&path, rules).expect("write the rules");
    promtool_ok(&["check", "rules", path.to_str().unwrap()]);
}

// === a real Prometheus scraping a real Herald ===

/// How often to ask Prometheus before giving up, and how long between.
const POLLS: usize = 240;
const POLL_EVERY: Duration = Duration::from_millis(500);

/// A `prometheus` process on a loopback port, scraping one server and one
/// agent every second and evaluating Herald's alert rules every second.
struct Prometheus {
    proc: Proc,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(dir: &Path, server_ops: SocketAddr, agent_ops: SocketAddr) -> Prometheus {
        run_tool("prometheus", &["--version"]);
        std::fs::create_dir_all(dir).expect("create the Prometheus dir");
        let config = dir.join("prometheus.yml");
        let rules = repo_path(RULES);
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n\
                 \x20 - job_name: herald-server\n    static_configs:\n      - targets: [\"{server_ops}\"]\n\
                 \x20 - job_name: herald-agent\n    static_configs:\n      - targets: [\"{agent_ops}\"]\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let addr = loopback();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"));
        let mut proc = Proc::spawn("prometheus", cmd);
        proc.wait_for_line(
            "Server is ready to receive web requests",
            Duration::from_secs(60),
        );
        Prometheus { proc, addr }
    }

    /// GET `path` of the HTTP API, as JSON whose status is "success".
    async fn api(&self, path: &str) -> Value {
        let (code, body) = get(self.addr, path)
            .await
            .unwrap_or_else(|e| panic!("{e}\nPrometheus's log:\n{}", self.proc.log_text()));
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert!(
            code == 200 && v["status"] == "success",
            "{path} answered {code}: {body}"
        );
        v["data"].clone()
    }

    /// The result of an instant query.
    async fn query(&self, q: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", query_escape(q)))
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Asks `check` of the API again until it says Ok; panics with its
    /// last complaint and the scrape targets' state after [`POLLS`] tries.
    async fn poll<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
        let mut last = String::new();
        for _ in 0..POLLS {
            match check().await {
                Ok(v) => return v,
                Err(e) => last = e,
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        let targets = self.api("/api/v1/targets").await;
        panic!("{what}: gave up after {POLLS} tries; last: {last}\ntargets: {targets:#}")
    }
}

/// The numeric value of one instant-vector element.
fn sample_value(element: &Value) -> f64 {
    element["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a sample value")
}

#[test]
fn prometheus_scrapes_a_live_herald() {
    let dir = temp_dir("prom");
    let (server, mut agent, agent_id, server_ops, agent_ops) = start_with_ops(dir.path());
    server.create_entry("spiffe://example.org/prometheus-test", &agent_id, &[]);

    let rt = rt();
    rt.block_on(async {
        let workload = client(&agent.socket).await;
        wait_for_svid(&workload).await;
    });
    let prom = Prometheus::start(&dir.path().join("prometheus"), server_ops, agent_ops);

    rt.block_on(async {
        // The agent's SVID count, through Prometheus.
        prom.poll("herald_agent_svids > 0 through Prometheus", async || {
            let result = prom.query("herald_agent_svids").await;
            match result.first().map(sample_value) {
                Some(v) if v > 0.0 => Ok(()),
                _ => Err(format!("herald_agent_svids: {result:?}")),
            }
        })
        .await;
        // The server's signing counter (its target is scraped on a
        // schedule of its own).
        let signed =
            r#"herald_server_svids_signed_total{job="herald-server",kind="x509",result="ok"}"#;
        prom.poll(
            "the workload's SVID counted through Prometheus",
            async || {
                let result = prom.query(signed).await;
                match result.as_slice() {
                    [one] if sample_value(one) >= 1.0 => Ok(()),
                    _ => Err(format!("{signed}: {result:?}")),
                }
            },
        )
        .await;

        check_rules(&prom).await;
        check_dashboard_queries(&prom).await;
    });

    // The agent gone, its target-down alert is pending (its `for` keeps it
    // from firing within this test): the rules match Herald's real labels.
    agent.proc.kill();
    rt.block_on(
        prom.poll("HeraldTargetDown pending for the agent", async || {
            let data = prom.api("/api/v1/alerts").await;
            let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
            let down = alerts.iter().any(|a| {
                a["labels"]["alertname"] == "HeraldTargetDown"
                    && a["labels"]["job"] == "herald-agent"
                    && a["state"] == "pending"
            });
            if down {
                Ok(())
            } else {
                Err(format!("alerts: {alerts:?}"))
            }
        }),
    );
}

/// Every alert rule loaded, evaluated without error, and quiet: its
/// expression selects nothing on this healthy server and agent.
async fn check_rules(prom: &Prometheus) {
    let rules = prom
        .poll("every rule evaluated", async || {
            let data = prom.api("/api/v1/rules").await;
            let rules: Vec<Value> = data["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
                panic!(
                    "rule {} fails to evaluate: {}",
                    bad["name"], bad["lastError"]
                );
            }
            match rules.iter().find(|r| r["health"] != "ok") {
                None if !rules.is_empty() => Ok(rules),
                _ => Err(format!("not all evaluated yet: {rules:?}")),
            }
        })
        .await;
    let mut loaded: Vec<String> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let mut defined = alert_rules();
    loaded.sort();
    defined.sort();
    assert_eq!(loaded, defined, "the rules Prometheus loaded");
    prom.poll("every alert quiet", async || {
        for rule in &rules {
            let expr = rule["query"].as_str().expect("a rule query");
            let hits = prom.query(expr).await;
            if !hits.is_empty() {
                return Err(format!("{} selects {hits:?}", rule["name"]));
            }
        }
        Ok(())
    })
    .await;
}

/// Every dashboard query runs; those of the panels a single server and
/// agent without federation always fill return data.
async fn check_dashboard_queries(prom: &Prometheus) {
    let queries = dashboard_queries(&dashboard());
    for (title, expr) in &queries {
        prom.query(&concrete(expr)).await;
        if ALWAYS_FILLED.contains(&title.as_str()) {
            prom.poll(&format!("data for panel {title:?}"), async || {
                let result = prom.query(&concrete(expr)).await;
                if result.is_empty() {
                    Err(format!("{expr}: no data"))
                } else {
                    Ok(())
                }
            })
            .await;
        }
    }
}

/// Panels with data as soon as one server and one agent serve a workload.
const ALWAYS_FILLED: &[&str] = &[
    "Outage budget per agent",
    "X509-SVIDs held",
    "Agents ready",
    "Time since last sync",
    "SVIDs signed by kind and result",
    "Signing latency p99",
    "Agents connected",
    "Servers ready",
    "API calls by code",
    "Registration entries",
    "Authority expiry",
    "Authorities by state",
    "Bundle acknowledged ratio",
    "Bundle sequence",
];
