//! The connection to a running server's admin socket, shared by every
//! command that manages the server (`entry`, `token`, `agent`,
//! `federation`, `authority`, and the socket forms of `bundle`, `x509 mint`
//! and `jwt mint`): their common flags, one call, a batch's items, and what
//! a refusal means for the exit code. Paged lists are in `paging.rs`.
//!
//! The commands are synchronous; each one runs its few calls on a
//! current-thread runtime owned by the [`AdminClient`].

use std::future::Future;
use std::path::{Path, PathBuf};

use clap::Args;
use tonic::transport::Channel;

use super::{CliError, Output};
use crate::proto::admin;
use crate::proto::admin::agents_client::AgentsClient;
use crate::proto::admin::bundles_client::BundlesClient;
use crate::proto::admin::entries_client::EntriesClient;
use crate::proto::admin::federated_bundles_client::FederatedBundlesClient;
use crate::proto::admin::federation_client::FederationClient;
use crate::proto::admin::local_authority_client::LocalAuthorityClient;
use crate::proto::admin::svids_client::SvidsClient;
use crate::proto::ADMIN_MAX_MESSAGE_SIZE as MAX_MESSAGE_SIZE;

/// The `--socket` flag of every admin command.
#[derive(Debug, Clone, Args)]
pub(super) struct SocketArgs {
    /// The server's admin socket (default: where `herald server run`
    /// listens unless configured otherwise, under /run/herald for root or
    /// $XDG_RUNTIME_DIR/herald for another user).
    #[arg(
        long = "socket",
        env = "HERALD_ADMIN_SOCKET",
        default_value_os_t = crate::runtime_dir::default_cli_admin_socket()
    )]
    pub(super) socket: PathBuf,
}

/// Where `--output` stands in a command's help: after the command's own
/// flags, even those declared after the struct that brings `--output` in,
/// and before `--help` and `--version` (which clap places at 999).
pub(super) const OUTPUT_LAST: usize = 998;

/// The flags of most admin commands: the socket and the output format.
#[derive(Debug, Clone, Args)]
pub(super) struct AdminArgs {
    #[command(flatten)]
    pub(super) socket: SocketArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, display_order = OUTPUT_LAST)]
    pub(super) output: Output,
}

impl AdminArgs {
    /// Connects to the socket these flags name.
    pub(super) fn connect(&self) -> Result<AdminClient, CliError> {
        AdminClient::connect(&self.socket.socket)
    }
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
            .map_err(|e| CliError::failed_in("cannot start the async runtime", &e))?;
        let channel = runtime
            .block_on(crate::uds::connect_unix(socket))
            .map_err(|e| {
                let at = socket.display();
                CliError::unreachable(
                    format_args!("cannot reach the server admin socket at {at}"),
                    &e,
                )
            })?;
        Ok(AdminClient { runtime, channel })
    }

    /// Runs one call to completion; a refusal becomes the command's error.
    pub(super) fn call<R>(
        &self,
        call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    ) -> Result<R, CliError> {
        self.runtime
            .block_on(call)
            .map(tonic::Response::into_inner)
            .map_err(status_error)
    }

    /// Runs one call to completion, leaving a refusal to the caller.
    pub(super) fn try_call<R>(
        &self,
        call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    ) -> Result<R, tonic::Status> {
        self.runtime.block_on(call).map(tonic::Response::into_inner)
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

/// One item of a batch call's answer: the server judges each on its own.
pub(super) trait BatchItem {
    /// The item's outcome; absent or code 0 is success.
    fn status(&self) -> Option<&admin::Status>;
}

macro_rules! batch_items {
    ($($t:ty),* $(,)?) => {
        $(impl BatchItem for $t {
            fn status(&self) -> Option<&admin::Status> {
                self.status.as_ref()
            }
        })*
    };
}

batch_items!(
    admin::EntryResult,
    admin::DeleteEntryResult,
    admin::FederationRelationshipResult,
    admin::DeleteFederationRelationshipResult,
    admin::BundleResult,
    admin::DeleteFederatedBundleResult,
);

/// A failed batch item's status, if it failed.
pub(super) fn failure(item: &impl BatchItem) -> Option<&admin::Status> {
    item.status().filter(|s| s.code != 0)
}

/// The only item of a one-item batch call, when it succeeded; its failure
/// is the command's (exit 2 when the server judged the input, 1 otherwise).
pub(super) fn single<T: BatchItem>(results: Vec<T>) -> Result<T, CliError> {
    let item = results
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Failed("the server answered no result".into()))?;
    match failure(&item) {
        Some(s) if is_bad_input(tonic::Code::from(s.code)) => {
            Err(CliError::BadInput(s.message.clone()))
        }
        Some(s) => Err(CliError::Failed(s.message.clone())),
        None => Ok(item),
    }
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
