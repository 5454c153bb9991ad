//! The one harness for everything that runs Herald for real: the
//! integration tests in `tests/` and the benchmarks in `benches/` (which
//! include it with `#[path = "../../tests/harness/mod.rs"] mod harness;`).
//!
//! One file per concept, so a test reads as the steps it takes:
//!
//! - [`bin`]: the `herald` binary cargo built, running it, and this process's uid and clock.
//! - [`dirs`]: temp dirs and loopback ports.
//! - [`config`]: server and agent TOML, written by builders.
//! - [`process`]: a child process with its stderr log, waited on line by line.
//! - [`cluster`]: `herald server run` and `herald agent run` processes.
//! - [`workload`]: Workload API clients against an agent's socket.
//! - [`sds`]: Envoy SDS streams against an agent's socket.
//! - [`node`]: an agent-like node API client (join-token attestation, then mTLS).
//! - [`postgres`]: a PostgreSQL database of the test's own, and the `[store]` table naming it.
//! - [`ha`]: several servers on one PostgreSQL database, and a proxy to cut it off.
//! - [`private_pg`]: a PostgreSQL cluster of the test's own, to stop and start.
//! - [`svid_watch`]: a workload watching its X.509 context, noting any expired SVID it holds.
//! - [`peer`]: in-process servers ("peers") and services on Unix sockets.
//! - [`admin`]: the admin API of an in-process server, and its request helpers.
//! - [`http`]: HTTP GETs through hyper, for servers that may chunk their answers (Prometheus).
//! - [`web`]: a test Web PKI and raw HTTPS for the federation bundle endpoint.
//! - [`kube_api`]: a Kubernetes API server (TokenReview, pods, nodes, JWKS) for k8s_psat.
//! - [`openssl`]: OpenSSL as an independent verifier.
//! - [`ops`]: the ops listener over HTTP, and its metrics parsed.
//! - [`procfs`]: a process's memory and CPU time, from /proc.
//! - [`hostile`]: federation peers that misbehave, and the bundles they serve.
//! - [`webdriver`]: headless Chromium through chromedriver, for the dashboard.
//! - [`x509pop`]: x509pop servers and agents over a machine PKI made at test time.
//!
//! Each harness file imports the few `herald` types it needs at its top,
//! so a module that moves in `src/` is a handful of `use` lines to follow.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod admin;
pub mod bin;
pub mod cluster;
pub mod config;
pub mod dirs;
pub mod ha;
pub mod hostile;
pub mod http;
pub mod kube_api;
pub mod node;
pub mod openssl;
pub mod ops;
pub mod peer;
pub mod postgres;
pub mod private_pg;
pub mod process;
pub mod procfs;
pub mod sds;
pub mod svid_watch;
pub mod web;
pub mod webdriver;
pub mod workload;
pub mod x509pop;
