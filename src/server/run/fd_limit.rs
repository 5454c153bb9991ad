//! The open-file limit: every connected agent holds one descriptor, and
//! the soft limit a service manager hands out is usually 1,024 (systemd's
//! default `LimitNOFILE=1024:524288`), so a server with a thousand agents
//! would stop accepting at the soft limit while the hard one allows far
//! more. At start the server raises its soft limit to the hard limit, as
//! the Go runtime does for SPIRE; an operator who wants a lower ceiling
//! sets the hard limit (`LimitNOFILE=` in the unit).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the (old, new) soft
/// limits when it changed. A refusal leaves the limit as it was.
pub(super) fn raise_open_file_limit() -> Option<(u64, u64)> {
    let limit = getrlimit(Resource::Nofile);
    let old = limit.current?;
    let target = raised(&limit)?;
    setrlimit(Resource::Nofile, target).ok()?;
    let new = getrlimit(Resource::Nofile).current?;
    (new != old).then_some((old, new))
}

/// The limit with its soft value at the hard one, if that is higher (an
/// unlimited value, `None`, is left alone: the kernel caps descriptors).
fn raised(limit: &Rlimit) -> Option<Rlimit> {
    let (soft, hard) = (limit.current?, limit.maximum?);
    (soft < hard).then_some(Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(current: Option<u64>, maximum: Option<u64>) -> Rlimit {
        Rlimit { current, maximum }
    }

    #[test]
    fn the_soft_limit_goes_up_to_the_hard_limit_and_never_down() {
        let up = raised(&limit(Some(1024), Some(524_288))).unwrap();
        assert_eq!((up.current, up.maximum), (Some(524_288), Some(524_288)));
        assert!(raised(&limit(Some(4096), Some(4096))).is_none());
        assert!(raised(&limit(None, None)).is_none());
        assert!(raised(&limit(Some(1024), None)).is_none());
    }

    /// In this process the call leaves the soft limit at the hard one
    /// (it only ever raises it, so it disturbs no other test).
    #[test]
    fn after_the_call_the_soft_limit_is_the_hard_limit() {
        raise_open_file_limit();
        let now = getrlimit(Resource::Nofile);
        if let (Some(soft), Some(hard)) = (now.current, now.maximum) {
            assert_eq!(soft, hard);
        }
    }
}
