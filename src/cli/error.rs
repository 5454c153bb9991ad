//! How a command fails: one line on stderr and an exit code saying whose
//! fault it was. Every constructor that takes an error prints its whole
//! source chain ([`crate::errors::chain`]), so a cause is never dropped on
//! the way to the operator.

use std::error::Error;
use std::fmt::Display;
use std::process::ExitCode;

use crate::errors::chain;
use crate::uds::UdsError;

/// A command's failure: what to print and which exit code to use.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The user's input is wrong (exit code 2).
    #[error("{0}")]
    BadInput(String),
    /// Doing the work failed (exit code 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// Bad input, described by `e` and every cause under it.
    pub(crate) fn bad_input(e: &dyn Error) -> Self {
        CliError::BadInput(chain(e))
    }

    /// A failure, described by `e` and every cause under it.
    pub(crate) fn failed(e: &dyn Error) -> Self {
        CliError::Failed(chain(e))
    }

    /// Bad input in `context` (usually the flag), then `e` and its causes.
    pub(crate) fn bad_input_in(context: impl Display, e: &dyn Error) -> Self {
        CliError::BadInput(format!("{context}: {}", chain(e)))
    }

    /// A failure while doing `context`, then `e` and its causes.
    pub(crate) fn failed_in(context: impl Display, e: &dyn Error) -> Self {
        CliError::Failed(format!("{context}: {}", chain(e)))
    }

    /// A socket that did not answer. `context` names the socket in the
    /// command's own words, so only the causes of `e` follow it (its own
    /// message would name the path a second time).
    pub(crate) fn unreachable(context: impl Display, e: &UdsError) -> Self {
        match e.source() {
            Some(cause) => CliError::failed_in(context, cause),
            None => CliError::failed_in(context, e),
        }
    }

    pub(super) fn exit_code(&self) -> ExitCode {
        match self {
            CliError::BadInput(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn context_is_followed_by_every_cause() {
        let e = Outer(std::io::Error::other("inner"));
        let CliError::Failed(m) = CliError::failed_in("doing it", &e) else {
            panic!("not a failure");
        };
        assert_eq!(m, "doing it: outer: inner");
    }

    #[test]
    fn an_unreachable_socket_is_named_once() {
        let e = UdsError::Connect {
            path: "/run/x.sock".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "absent"),
        };
        let CliError::Failed(m) = CliError::unreachable("cannot reach /run/x.sock", &e) else {
            panic!("not a failure");
        };
        assert_eq!(m, "cannot reach /run/x.sock: absent");
    }
}
