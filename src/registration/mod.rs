//! Registration: which workloads get which SPIFFE IDs. The types both roles
//! speak: the server stores and authorizes [`RegistrationEntry`]s, the agent
//! matches their [`Selector`]s against what its attestors see;
//! [`node_alias`] names sets of agents by their node selectors.
//!
//! A selector cannot exist without passing its checks (its fields are
//! private and deserialization runs the same checks), so every index key
//! built from one is unambiguous.

mod entry;
pub mod node_alias;
mod selector;

pub use entry::RegistrationEntry;
pub use selector::Selector;

/// A registration record that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {record}: `{field}` {reason}")]
pub struct RegistrationError {
    /// The record, as an operator would name it.
    pub record: String,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks one rule of a record: `Err` naming `record` and `field` when
/// `broken` holds.
fn rule(
    broken: bool,
    record: impl FnOnce() -> String,
    field: &'static str,
    reason: &str,
) -> Result<(), RegistrationError> {
    if broken {
        return Err(RegistrationError {
            record: record(),
            field,
            reason: reason.into(),
        });
    }
    Ok(())
}
