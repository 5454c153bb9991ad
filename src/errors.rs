//! Printing an error with its causes. Herald's errors keep their source
//! chain (`#[source]`); the edges that show an error to a person (the CLI's
//! one line, a log field) print the whole chain with [`Chain`], so each
//! error's own message says only what it adds.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources, `: `-separated.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(inner) = cur {
            write!(f, ": {inner}")?;
            cur = inner.source();
        }
        Ok(())
    }
}

/// The error and its sources on one line.
pub fn chain(e: &dyn Error) -> String {
    Chain(e).to_string()
}

/// A gRPC status code in words ("permission denied"), for people.
pub fn code_words(code: tonic::Code) -> String {
    let mut words = String::new();
    for c in format!("{code:?}").chars() {
        if c.is_uppercase() && !words.is_empty() {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    words
}

/// What broke the connection behind a status tonic made from a transport
/// error (one with a source): the innermost cause, which names what
/// happened ("peer closed connection without sending TLS close_notify")
/// where the outer layers only repeat it, without the documentation link
/// rustls appends. None for a status the server answered.
pub fn connection_cause(status: &tonic::Status) -> Option<String> {
    let mut cause: &dyn Error = status.source()?;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    Some(match text.split_once(": https://") {
        Some((reason, _link)) => reason.to_owned(),
        None => text,
    })
}

/// A status on one short line: "connection lost: <cause>" for a broken
/// connection, else "<code in words>: <message>". tonic's own `Display`
/// prints the message and then its sources with `Debug`, which [`Chain`]
/// would print again: wrap a status in this rather than making it a
/// `#[source]`.
#[derive(Debug, Clone, Copy)]
pub struct StatusReason<'a>(pub &'a tonic::Status);

impl fmt::Display for StatusReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match connection_cause(self.0) {
            Some(cause) => write!(f, "connection lost: {cause}"),
            None => write!(f, "{}: {}", code_words(self.0.code()), self.0.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the config")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn prints_every_cause() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        assert_eq!(chain(&e), "reading the config: no such file");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("error reading a body from connection")]
    struct Body(#[source] std::io::Error);

    /// The status tonic makes when the server dies mid-stream: the message
    /// already holds the cause, and the source holds it again.
    fn lost_connection() -> tonic::Status {
        let io = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify: \
             https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
        );
        let body = Body(io);
        let mut status = tonic::Status::unknown(format!("h2 protocol error: {}", chain(&body)));
        status.set_source(std::sync::Arc::new(body));
        status
    }

    #[test]
    fn a_lost_connection_is_one_short_reason() {
        let status = lost_connection();
        assert_eq!(
            StatusReason(&status).to_string(),
            "connection lost: peer closed connection without sending TLS close_notify"
        );
    }

    #[test]
    fn an_answered_status_is_its_code_and_message_once() {
        let status = tonic::Status::permission_denied("join token already used");
        assert_eq!(
            StatusReason(&status).to_string(),
            "permission denied: join token already used"
        );
        assert_eq!(
            code_words(tonic::Code::FailedPrecondition),
            "failed precondition"
        );
    }
}
