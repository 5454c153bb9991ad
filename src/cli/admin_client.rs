//! The connection to a running server's admin socket, shared by every
//! command that manages the server (`entry`, `token`, `agent`, and the
//! socket forms of `bundle show`, `x509 mint` and `jwt mint`), and the
//! output helpers those commands share.
//!
//! The commands are synchronous; each one runs its few calls on a
//! current-thread runtime owned by the [`AdminClient`].

use std::future::Future;
use std::path::{Path, PathBuf};

use clap::Args;
use tonic::transport::Channel;

use super::CliError;
use crate::proto::admin::agents_client::AgentsClient;
use crate::proto::admin::bundles_client::BundlesClient;
use crate::proto::admin::entries_client::EntriesClient;
use crate::proto::admin::federated_bundles_client::FederatedBundlesClient;
use crate::proto::admin::federation_client::FederationClient;
use crate::proto::admin::local_authority_client::LocalAuthorityClient;
use crate::proto::admin::svids_client::SvidsClient;
use crate::proto::ADMIN_MAX_MESSAGE_SIZE as MAX_MESSAGE_SIZE;

/// Where `herald server run` listens for administrators unless told otherwise.
pub(super) const DEFAULT_SOCKET: &str = "/tmp/herald-server/admin.sock";

/// The `--socket` flag of every admin command.
#[derive(Debug, Clone, Args)]
pub(super) struct SocketArgs {
    /// The server's admin socket.
    #[arg(long = "socket", env = "HERALD_ADMIN_SOCKET", default_value = DEFAULT_SOCKET)]
    pub(super) socket: PathBuf,
}

/// A gRPC channel to the admin socket and the runtime that drives it.
pub(super) struct AdminClient {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

impl AdminClient {
    /// Connects to the admin socket at `socket`.
    pub(super) fn connect(socket: &Path) -> Result<Self, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
        let channel = runtime
            .block_on(crate::uds::connect_unix(socket))
            .map_err(|e| {
                CliError::Failed(format!(
                    "cannot reach the server admin socket at {}: {}",
                    socket.display(),
                    e.reason()
                ))
            })?;
        Ok(AdminClient { runtime, channel })
    }

    /// Runs one or more calls to completion.
    pub(super) fn run<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The Entries service.
    pub(super) fn entries(&self) -> EntriesClient<Channel> {
        EntriesClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Agents service.
    pub(super) fn agents(&self) -> AgentsClient<Channel> {
        AgentsClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// The Bundles service.
    pub(super) fn bundles(&self) -> BundlesClient<Channel> {
        BundlesClient::new(self.channel.clone())
    }

    /// The Svids service.
    pub(super) fn svids(&self) -> SvidsClient<Channel> {
        SvidsClient::new(self.channel.clone())
    }

    /// The Federation service.
    pub(super) fn federation(&self) -> FederationClient<Channel> {
        FederationClient::new(self.channel.clone())
    }

    /// The FederatedBundles service.
    pub(super) fn federated_bundles(&self) -> FederatedBundlesClient<Channel> {
        FederatedBundlesClient::new(self.channel.clone())
    }

    /// The LocalAuthority service.
    pub(super) fn authorities(&self) -> LocalAuthorityClient<Channel> {
        LocalAuthorityClient::new(self.channel.clone())
    }
}

/// Follows a paged list to its end: `fetch` gets the page at a token and
/// returns its items and the next token (empty at the end).
pub(super) fn collect_pages<T>(
    mut fetch: impl FnMut(String) -> Result<(Vec<T>, String), tonic::Status>,
) -> Result<Vec<T>, CliError> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token).map_err(status_error)?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// What a refused call means for the exit code: the server judged the
/// input (exit 2), or something failed (exit 1).
pub(super) fn status_error(status: tonic::Status) -> CliError {
    let message = if status.message().is_empty() {
        format!("the server answered {:?}", status.code())
    } else {
        status.message().to_string()
    };
    if is_bad_input(status.code()) {
        CliError::BadInput(message)
    } else if status.code() == tonic::Code::Unavailable {
        CliError::Failed(format!("the server is unavailable: {message}"))
    } else {
        CliError::Failed(message)
    }
}

/// A failed batch item as a command failure (exit 2 when the server judged
/// the input, 1 otherwise).
pub(super) fn check_item(status: &Option<crate::proto::admin::Status>) -> Result<(), CliError> {
    match status {
        Some(s) if s.code != 0 => {
            if is_bad_input(tonic::Code::from(s.code)) {
                Err(CliError::BadInput(s.message.clone()))
            } else {
                Err(CliError::Failed(s.message.clone()))
            }
        }
        _ => Ok(()),
    }
}

/// The only result of a one-item batch call.
pub(super) fn only_result<T>(results: Vec<T>) -> Result<T, CliError> {
    results
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Failed("the server answered no result".into()))
}

/// Codes that say the request was wrong rather than the server.
pub(super) fn is_bad_input(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::AlreadyExists
            | tonic::Code::FailedPrecondition
            | tonic::Code::OutOfRange
    )
}

/// A seconds flag for an `int32` field: a duration, at most `i32::MAX`.
pub(super) fn secs_i32(flag: &str, value: &str) -> Result<i32, CliError> {
    let secs = super::duration_flag(flag, value)?;
    i32::try_from(secs).map_err(|_| CliError::BadInput(format!("--{flag}: {value} is too long")))
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn format_time(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Prints rows under a header, each column as wide as its widest cell.
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

/// Prints `label: value` lines with the values aligned.
pub(super) fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for (label, value) in fields {
        println!("{label:<width$} : {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_time_as_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
