//! One line of the audit log, and who made the call it records.

use std::net::SocketAddr;

use serde::Serialize;
use serde_json::{Map, Value};
use tonic::transport::server::UdsConnectInfo;

use crate::server::run::{ConnInfo, NodeConnectInfo};

/// One audited call, serialized as one JSON object.
#[derive(Debug, Serialize)]
pub(super) struct AuditRecord {
    /// When the call ended, RFC 3339 in UTC with milliseconds.
    pub(super) time: String,
    /// The call's id, as in the `request` span of the server's log lines.
    pub(super) request_id: String,
    /// Who called.
    pub(super) caller: Caller,
    /// The full gRPC method (`/herald.admin.v1.Agents/BanAgent`).
    pub(super) method: String,
    /// The identifying fields of the request (and of the response where
    /// the server chose them, such as a created entry's id).
    pub(super) fields: Map<String, Value>,
    /// The gRPC code's name (`Ok`, `InvalidArgument`, ...).
    pub(super) status: String,
    /// The status message, on error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) message: Option<String>,
}

/// The caller as the kernel or the TLS handshake told us: uid, gid and pid
/// (SO_PEERCRED) on the admin socket; the SPIFFE ID of the client
/// certificate, if any, and the remote address on the node API.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub(super) struct Caller {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spiffe_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<SocketAddr>,
}

impl Caller {
    /// The caller of a request on the admin socket or the node API; empty
    /// when neither connect info is there.
    pub(super) fn of(extensions: &http::Extensions) -> Caller {
        if let Some(info) = extensions.get::<ConnInfo<UdsConnectInfo>>() {
            let cred = info.inner.peer_cred;
            return Caller {
                uid: cred.map(|c| c.uid()),
                gid: cred.map(|c| c.gid()),
                pid: cred.and_then(|c| c.pid()),
                ..Caller::default()
            };
        }
        if let Some(info) = extensions.get::<NodeConnectInfo>() {
            let spiffe_id = info.client_svid().ok().map(|peer| peer.id.to_string());
            return Caller {
                spiffe_id,
                address: info.inner.get_ref().remote_addr(),
                ..Caller::default()
            };
        }
        Caller::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_caller_and_no_message_serialize_to_nothing() {
        let r = AuditRecord {
            time: "t".into(),
            request_id: "r".into(),
            caller: Caller::default(),
            method: "/m".into(),
            fields: Map::new(),
            status: "Ok".into(),
            message: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"time":"t","request_id":"r","caller":{},"method":"/m","fields":{},"status":"Ok"}"#
        );
    }
}
