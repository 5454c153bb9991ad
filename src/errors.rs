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
}
