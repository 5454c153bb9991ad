//! Who may call the admin API: root, the uid the server runs as, and the
//! uids in `admin_allowed_uids`. The socket's file mode is a first fence;
//! this check is the one that holds when the mode or the directory is
//! wrong (a 0666 socket, a group-writable directory). The caller's uid is
//! the peer credential (SO_PEERCRED) the kernel recorded at accept, checked
//! on every call.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::future::{self, Either, Ready};
use http::{Request, Response};
use tonic::body::Body;
use tonic::transport::server::UdsConnectInfo;

use crate::server::run::ConnInfo;

/// The uids allowed to administer the trust domain.
#[derive(Debug, Clone)]
pub(crate) struct AllowedCallers(Arc<BTreeSet<u32>>);

impl AllowedCallers {
    /// Root, `own_uid` (the server's) and `extra`.
    pub(crate) fn new(own_uid: u32, extra: &[u32]) -> Self {
        let mut uids: BTreeSet<u32> = extra.iter().copied().collect();
        uids.insert(0);
        uids.insert(own_uid);
        AllowedCallers(Arc::new(uids))
    }

    /// Whether `uid` may call.
    pub(crate) fn allows(&self, uid: u32) -> bool {
        self.0.contains(&uid)
    }
}

/// Refuses every admin call whose caller uid is not allowed.
#[derive(Debug, Clone)]
pub(crate) struct CallerCheckLayer(pub(crate) AllowedCallers);

impl<S> tower::Layer<S> for CallerCheckLayer {
    type Service = CallerCheck<S>;

    fn layer(&self, inner: S) -> CallerCheck<S> {
        CallerCheck {
            inner,
            allowed: self.0.clone(),
        }
    }
}

/// See [`CallerCheckLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CallerCheck<S> {
    inner: S,
    allowed: AllowedCallers,
}

impl<S, B> tower::Service<Request<B>> for CallerCheck<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<Body>, S::Error>>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let uid = req
            .extensions()
            .get::<ConnInfo<UdsConnectInfo>>()
            .and_then(|info| info.inner.peer_cred)
            .map(|cred| cred.uid());
        let refusal = match uid {
            Some(uid) if self.allowed.allows(uid) => None,
            Some(uid) => {
                tracing::warn!(
                    uid,
                    path = req.uri().path(),
                    "admin API: caller uid is not allowed; refused"
                );
                Some(format!(
                    "uid {uid} may not use the admin API; allowed are root, the server's uid \
                     and admin_allowed_uids in server.toml"
                ))
            }
            None => {
                tracing::warn!(
                    path = req.uri().path(),
                    "admin API: the caller's credentials are unknown; refused"
                );
                Some("the admin API could not tell the caller's uid; refused".to_string())
            }
        };
        match refusal {
            None => Either::Left(self.inner.call(req)),
            Some(message) => Either::Right(future::ready(Ok(tonic::Status::permission_denied(
                message,
            )
            .into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_own_and_listed_uids_are_allowed_others_not() {
        let a = AllowedCallers::new(1000, &[1234]);
        assert!(a.allows(0) && a.allows(1000) && a.allows(1234));
        assert!(!a.allows(65534));
    }
}
