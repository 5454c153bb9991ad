//! Attacks on the Workload API socket of a real `herald agent` (issue 10,
//! attacks 1 and 7), mounted by any local user before any check: an HPACK
//! bomb, a header block that never ends, streams and connections without
//! number. Each attack is written by hand on a raw Unix socket; memory is
//! read from the agent's /proc/<pid>/status; a well-behaved client (the
//! `spiffe` crate) must still get its SVID afterwards.

mod harness;
#[path = "harness/raw_h2_unix.rs"]
mod raw_h2;

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::cluster::{Agent, Server};
use harness::workload::{client, rt, wait_for_svid};
use raw_h2::*;

/// How much the agent's peak memory may grow under an attack that, before
/// the fix, made it allocate hundreds of MiB.
const ATTACK_BOUND_MIB: u64 = 48;
/// How far above its baseline the agent's RSS may stay once every client
/// has left: what the allocator keeps for reuse, not what the attack grew.
const RETURN_BOUND_MIB: u64 = 8;

/// A server, an agent whose agent.toml ends with `extra`, an entry for this
/// test process, and its SVID fetched once (so the agent is warm).
fn start(extra: &str) -> (Server, Agent, tempfile::TempDir) {
    let server = Server::start_temp();
    let dir = tempfile::tempdir().unwrap();
    let (token, agent_id) = server.join_token();
    let config = server.agent_config(dir.path(), Some(&token));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .unwrap();
    file.write_all(extra.as_bytes()).unwrap();
    let agent = Agent::start(&config);
    server.create_entry("spiffe://example.org/security/wl", &agent_id, &[]);
    well_behaved_client_works(&agent.socket);
    (server, agent, dir)
}

fn well_behaved_client_works(socket: &Path) {
    rt().block_on(async {
        let c = client(socket).await;
        let svid = wait_for_svid(&c).await;
        assert_eq!(
            svid.spiffe_id().to_string(),
            "spiffe://example.org/security/wl"
        );
    });
}

/// Writes `frames` until the peer stops taking them; the bytes written.
fn send_until_refused(s: &mut std::os::unix::net::UnixStream, frames: &[Vec<u8>]) -> usize {
    let mut sent = 0;
    for f in frames {
        if s.write_all(f).is_err() {
            break;
        }
        sent += f.len();
    }
    sent
}

#[test]
fn an_hpack_bomb_closes_its_connection_and_costs_no_memory() {
    let (_server, agent, _dir) = start("");
    let pid = agent.proc.pid();
    let before = hwm_mib(pid);
    // One 4000-byte dynamic-table entry, then indexed references to it:
    // 16 Ki references (64 MiB decoded) in one frame, then 64 Ki (256 MiB)
    // over four CONTINUATION frames.
    let entry = literal_indexed(b"x-bomb", &[b'v'; 4000]);
    let refs = vec![indexed(62)[0]; 16 * 1024];
    for frames in [1, 4] {
        let mut s = connect(&agent.socket);
        let mut attack = vec![frame(HEADERS, 0, 1, &entry)];
        for i in 0..frames {
            let flags = if i == frames - 1 { END_HEADERS } else { 0 };
            attack.push(frame(CONTINUATION, flags, 1, &refs));
        }
        send_until_refused(&mut s, &attack);
        assert!(
            closed_by_peer(&mut s, Duration::from_secs(60)),
            "the agent kept a connection that sent an HPACK bomb open"
        );
    }
    let grown = hwm_mib(pid).saturating_sub(before);
    assert!(
        grown < ATTACK_BOUND_MIB,
        "HPACK bombs of 64 and 256 MiB raised the agent's peak memory by {grown} MiB"
    );
    well_behaved_client_works(&agent.socket);
}

#[test]
fn a_header_block_that_never_ends_is_cut_off() {
    let (_server, agent, _dir) = start("");
    let pid = agent.proc.pid();
    let before = hwm_mib(pid);
    // 256 MiB of header frames without END_HEADERS: blocks of one HEADERS
    // and seven CONTINUATION frames of 16 KiB, then a new HEADERS on the
    // next stream, and so on.
    let fill = vec![indexed(2)[0]; 16 * 1024 - 64];
    let mut frames = Vec::new();
    for block in 0..2048u32 {
        let stream = 1 + 2 * block;
        frames.push(frame(HEADERS, 0, stream, &fill));
        for _ in 0..7 {
            frames.push(frame(CONTINUATION, 0, stream, &fill));
        }
    }
    let total: usize = frames.iter().map(Vec::len).sum();
    let mut s = connect(&agent.socket);
    let sent = send_until_refused(&mut s, &frames);
    assert!(
        sent < total,
        "the agent took all {} MiB of an unfinished header block",
        total >> 20
    );
    assert!(closed_by_peer(&mut s, Duration::from_secs(60)));
    let grown = hwm_mib(pid).saturating_sub(before);
    assert!(
        grown < ATTACK_BOUND_MIB,
        "{} MiB of unfinished header blocks raised the agent's peak memory by {grown} MiB",
        total >> 20
    );
    well_behaved_client_works(&agent.socket);
}

/// Opens `streams` Workload API streams on a new connection, none of them
/// finished (no request body), and counts the ones the agent refuses.
/// Returns the connection and (advertised stream limit, refused count).
fn open_streams(
    socket: &Path,
    streams: u32,
    expect_refused: usize,
) -> (std::os::unix::net::UnixStream, Option<u32>, usize) {
    let mut s = connect(socket);
    let mut limit = None;
    // The server's SETTINGS come first.
    while let Some((kind, flags, _, payload)) = read_frame(&mut s) {
        if kind == SETTINGS && flags & ACK == 0 {
            limit = setting(&payload, SETTINGS_MAX_CONCURRENT_STREAMS);
            s.write_all(&frame(SETTINGS, ACK, 0, &[])).unwrap();
            break;
        }
    }
    let block = grpc_request_block("FetchX509SVID");
    for i in 0..streams {
        s.write_all(&frame(HEADERS, END_HEADERS, 1 + 2 * i, &block))
            .unwrap();
    }
    let mut refused = 0;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while refused < expect_refused {
        match read_frame(&mut s) {
            Some((RST_STREAM, _, _, p)) if p[..] == REFUSED_STREAM.to_be_bytes() => refused += 1,
            Some((GOAWAY, ..)) | None => break,
            Some(_) => {}
        }
    }
    (s, limit, refused)
}

#[test]
fn streams_per_connection_are_capped_and_memory_stays_bounded() {
    let (_server, agent, _dir) = start("");
    let pid = agent.proc.pid();
    let baseline = rss_mib(pid);
    // Three rounds of 20 connections asking for 300 streams each: 100 on
    // each are served, the rest refused; then every client leaves.
    let mut peak = 0;
    for _ in 0..3 {
        let mut held = Vec::new();
        for _ in 0..20 {
            let (s, limit, refused) = open_streams(&agent.socket, 300, 200);
            assert_eq!(limit, Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
            assert_eq!(refused, 200, "streams beyond the limit are refused");
            held.push(s);
        }
        peak = peak.max(rss_mib(pid));
        drop(held);
    }
    // Connections and streams are released: the sockets are closed, and
    // once the socket has no clients the agent hands the freed heap back,
    // so its RSS returns near the baseline instead of staying at the peak.
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while fds() > 32 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(fds() <= 32, "{} descriptors still open", fds());
    let mut after = rss_mib(pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    while after > baseline + RETURN_BOUND_MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_mib(pid);
    }
    eprintln!("agent RSS: {baseline} MiB before, {peak} MiB peak, {after} MiB after");
    assert!(
        peak <= baseline + ATTACK_BOUND_MIB,
        "agent RSS: {baseline} MiB before, {peak} MiB at most with 2000 streams open"
    );
    assert!(
        after <= baseline + RETURN_BOUND_MIB,
        "agent RSS: {baseline} MiB before, {peak} MiB at the peak, still {after} MiB after every client left"
    );
    well_behaved_client_works(&agent.socket);
}

#[test]
fn connections_per_uid_are_capped_and_idle_ones_closed() {
    let (_server, agent, _dir) =
        start("workload_api_max_connections_per_uid = 16\nworkload_api_idle_timeout = \"3s\"\n");
    // The warm-up client's connection is gone once the agent sees it close.
    std::thread::sleep(Duration::from_millis(500));
    // A connection over the cap may be closed before its preface is
    // written; it reads nothing and counts as refused below.
    let mut conns: Vec<_> = (0..48)
        .map(|_| connect_unchecked(&agent.socket).0)
        .collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for mut s in conns.drain(..) {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        match read_frame(&mut s) {
            Some(_) => accepted.push(s),
            None => refused += 1,
        }
    }
    assert_eq!(accepted.len(), 16, "connections beyond the uid's cap");
    assert_eq!(refused, 32);
    // Connections without a request in flight are closed once idle.
    for s in &mut accepted {
        assert!(
            closed_by_peer(s, Duration::from_secs(30)),
            "an idle connection stayed open"
        );
    }
    drop(accepted);
    // The slots are free again: a well-behaved client gets through.
    well_behaved_client_works(&agent.socket);
}

/// A client whose `:authority` is valid is passed through untouched once
/// its first header block is judged (the shim stops decoding its frames).
/// Such a connection still answers later requests, and is still closed
/// once idle: the idle limit does not depend on the shim's decoding.
#[test]
fn a_passed_through_connection_serves_later_requests_and_is_closed_once_idle() {
    const END_STREAM: u8 = 0x1;
    let (_server, agent, _dir) = start("workload_api_idle_timeout = \"3s\"\n");
    let mut s = connect(&agent.socket);
    let block = grpc_request_block("FetchJWTSVID");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Requests without a message: each is answered with an error status,
    // on its own stream (1 judged by the shim, 3 and 5 passed through).
    for stream in [1, 3, 5] {
        s.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &block))
            .unwrap();
        let answered = std::iter::from_fn(|| read_frame(&mut s))
            .any(|(kind, _, on, _)| kind == HEADERS && on == stream);
        assert!(answered, "no answer on stream {stream}");
    }
    let start = Instant::now();
    assert!(
        closed_by_peer(&mut s, Duration::from_secs(30)),
        "an idle passed-through connection stayed open"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "closed before it was idle"
    );
}
