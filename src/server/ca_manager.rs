//! The task that rotates the server's authorities forever: it asks the
//! planner (`rotation.rs`) what is due, applies it through the authority
//! transitions, swaps the result in, and sleeps until the next event or the
//! next agent acknowledgement, whichever comes first.

use crate::clock::now_unix;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::authorities::{Authorities, AuthorityError};
use super::rotation::{next_event, plan, Action, Propagation, SlotView, Window};
use super::state::ServerState;
use crate::errors::Chain;
use crate::store::{AuthorityKind, AuthorityState};

/// How often rotation re-reads acknowledgements made through other
/// servers while it waits for them.
const REMOTE_ACK_POLL: Duration = Duration::from_secs(2);

fn kind_name(kind: AuthorityKind) -> &'static str {
    match kind {
        AuthorityKind::X509 => "X.509",
        AuthorityKind::Jwt => "JWT",
    }
}

/// What the planner needs to know of one kind.
fn view(a: &Authorities, kind: AuthorityKind) -> (SlotView, Option<u64>) {
    let records: Vec<_> = match kind {
        AuthorityKind::X509 => a.x509_slots().iter().map(|s| &s.record).collect(),
        AuthorityKind::Jwt => a.jwt_slots().iter().map(|s| &s.record).collect(),
    };
    let window = |r: &crate::store::AuthorityRecord| Window {
        not_before: r.not_before,
        not_after: r.not_after,
    };
    let mut slot = SlotView {
        active: None,
        prepared: None,
        old: Vec::new(),
    };
    let mut prepared_seq = None;
    for r in records {
        match r.state {
            AuthorityState::Active => slot.active = Some(window(r)),
            AuthorityState::Prepared => {
                slot.prepared = Some(window(r));
                prepared_seq = Some(r.bundle_sequence);
            }
            AuthorityState::Old => slot.old.push((r.id.clone(), window(r))),
        }
    }
    (slot, prepared_seq)
}

/// Applies one planned action; returns the new authority set.
fn apply(
    state: &ServerState,
    current: &Authorities,
    kind: AuthorityKind,
    action: &Action,
    now: i64,
) -> Result<Authorities, AuthorityError> {
    let store = state.store.as_ref();
    let keys = state.keys.as_ref();
    match action {
        Action::Prepare => current.prepare(kind, store, keys, now),
        Action::Activate { forced_past } => {
            if !forced_past.is_empty() {
                tracing::warn!(
                    kind = kind_name(kind),
                    lagging = %forced_past.join(", "),
                    "activation deadline passed: activating although these agents have not acknowledged the new bundle"
                );
            }
            current.activate(kind, store)
        }
        Action::Retire(id) => current.retire(kind, id, store, keys),
        Action::Bootstrap => Authorities::load_or_create(
            store,
            keys,
            current.trust_domain(),
            current.settings().clone(),
            now,
        ),
    }
}

/// Runs until `stop` turns true.
pub async fn run(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let mut last_lagging: Vec<String> = Vec::new();
    loop {
        let now = now_unix();
        let deadline = state.settings.ca_activation_deadline;
        let mut next = now + 60;
        let mut current = (*state.authorities()).clone();
        let mut changed = false;
        let mut waiting = false;
        for kind in [AuthorityKind::X509, AuthorityKind::Jwt] {
            let (slot, prepared_seq) = view(&current, kind);
            let propagation = match prepared_seq {
                Some(seq) => {
                    let lagging = super::cluster::lagging_agents(&state, seq).await;
                    waiting |= !lagging.is_empty();
                    if lagging.is_empty() {
                        Propagation::Complete
                    } else {
                        Propagation::Lagging(lagging)
                    }
                }
                None => Propagation::Complete,
            };
            let actions = plan(&slot, &propagation, deadline, now);
            if actions.is_empty() {
                if let Propagation::Lagging(l) = &propagation {
                    if now >= slot.active.map(|a| a.activate_at()).unwrap_or(i64::MAX)
                        && *l != last_lagging
                    {
                        tracing::info!(kind = kind_name(kind), lagging = %l.join(", "), "activation due, waiting for agents to acknowledge the new bundle");
                        last_lagging = l.clone();
                    }
                }
            }
            for action in actions {
                let st = state.clone();
                let cur = current.clone();
                let act = action.clone();
                let applied =
                    tokio::task::spawn_blocking(move || apply(&st, &cur, kind, &act, now)).await;
                match applied {
                    Ok(Ok(next_set)) => {
                        current = next_set;
                        changed = true;
                    }
                    Ok(Err(e)) => {
                        tracing::error!(kind = kind_name(kind), action = ?action, error = %Chain(&e), "rotation step failed; retrying")
                    }
                    Err(e) => tracing::error!(error = %Chain(&e), "rotation task failed"),
                }
            }
            let (slot, _) = view(&current, kind);
            next = next.min(next_event(&slot, deadline, now));
        }
        if changed {
            state.set_authorities(current);
            last_lagging.clear();
        }
        let mut wait =
            Duration::from_secs(u64::try_from(next - now_unix()).unwrap_or(0).clamp(1, 60));
        // Acknowledgements through other servers arrive by the store, not
        // by `ack_changed`: look again soon.
        if waiting && state.store.cluster().is_some() {
            wait = wait.min(REMOTE_ACK_POLL);
        }
        tokio::select! {
            _ = crate::shutdown::stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
            _ = state.ack_changed() => {}
        }
    }
}
