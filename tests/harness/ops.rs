//! The ops listener as Prometheus and a kubelet meet it: roles started
//! with one, one HTTP/1.1 GET over a plain TCP connection, and the
//! exposition text parsed into samples (name, labels, value).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::cluster::{Agent, Server};
use super::config::ServerToml;
use super::dirs::free_port;

/// The `[ops]` table that puts a role's ops listener on `addr`.
pub fn ops_table(addr: SocketAddr) -> String {
    format!("\n[ops]\naddress = \"{addr}\"\n")
}

/// A loopback address whose port nothing listened on a moment ago.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A server and an attested agent in `dir`, each with its ops listener;
/// and the agent's ID and both listeners' addresses.
pub fn start_with_ops(dir: &Path) -> (Server, Agent, String, SocketAddr, SocketAddr) {
    let (server_ops, agent_ops) = (loopback(), loopback());
    let server =
        Server::start_with(&ServerToml::new(&dir.join("server")).extra(&ops_table(server_ops)));
    let (token, agent_id) = server.join_token();
    let config = server
        .agent_toml(&dir.join("agent"), Some(&token))
        .extra(&ops_table(agent_ops))
        .write();
    let agent = Agent::start(&config);
    (server, agent, agent_id, server_ops, agent_ops)
}

/// One HTTP answer: status, header lines (names lowercased) and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Sends `method path` to `addr` and reads the answer to the end (the
/// listener closes each connection after one answer).
pub fn request(addr: SocketAddr, method: &str, path: &str) -> HttpAnswer {
    let mut tcp = TcpStream::connect(addr).expect("connect to the ops listener");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `GET path`.
pub fn get(addr: SocketAddr, path: &str) -> HttpAnswer {
    request(addr, "GET", path)
}

/// One sample of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition (OpenMetrics or Prometheus 0.0.4): comment
/// lines skipped, each other line `name{k="v",...} value`. Panics on a
/// line it cannot read, so a malformed exposition fails the test.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("unreadable sample line {l:?}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"`, with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.insert(key.trim_start_matches(',').to_string(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(out)
}

/// The value of the sample `name` whose labels include all of `labels`;
/// None if there is none.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Scrapes `/metrics` at `addr` and parses it.
pub fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let answer = get(addr, "/metrics");
    assert_eq!(answer.status, 200, "/metrics: {}", answer.body);
    parse(&answer.body)
}
