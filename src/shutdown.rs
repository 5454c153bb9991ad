//! Graceful shutdown, shared by every long-running task: one `watch`
//! channel whose value turns true once; tasks wait for it alongside their
//! work and return cleanly.

use tokio::sync::watch;

/// Creates the shutdown trigger and its first listener.
pub fn channel() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

/// Resolves once shutdown has been triggered (or its sender dropped).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it here so callers'
    // futures stay Send.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
