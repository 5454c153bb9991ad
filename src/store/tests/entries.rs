//! Registration entries: CRUD, batch semantics, indexes, filters and paging.

use std::collections::BTreeSet;

use super::{add_entry, entry, id, sel, Store};
use crate::registration::RegistrationEntry;
use crate::store::{EntryFilter, PageRequest, SelectorMatch, StoreError};

pub(super) fn create_get_update_delete(store: Store) {
    let created = add_entry(&*store, "/web", "/agent", &["unix:uid:1000"]);
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    assert_eq!(created.revision, 1);
    assert_eq!(store.get_entry(&created.id).unwrap(), Some(created.clone()));
    assert_eq!(store.count_entries().unwrap(), 1);

    let mut changed = created.clone();
    changed.x509_svid_ttl = 600;
    changed.dns_names = vec!["web.example.org".into()];
    changed.created_at = 0; // ignored: creation time is kept
    let updated = store.update_entry(changed).unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(store.get_entry(&created.id).unwrap(), Some(updated.clone()));

    let deleted = store
        .delete_entries(&[created.id.clone(), "nope".into()])
        .unwrap();
    assert_eq!(deleted[0].as_ref().unwrap(), &updated);
    assert!(matches!(
        &deleted[1],
        Err(StoreError::NotFound { id, .. }) if id == "nope"
    ));
    assert_eq!(store.get_entry(&created.id).unwrap(), None);
    assert_eq!(store.count_entries().unwrap(), 0);
    assert!(store.entries_by_parent(&id("/agent")).unwrap().is_empty());
    assert!(store
        .entries_by_selector(&sel("unix:uid:1000"))
        .unwrap()
        .is_empty());
}

pub(super) fn update_of_missing_entry_is_not_found(store: Store) {
    let mut e = entry("/web", "/agent", &["unix:uid:1"]);
    e.id = "missing".into();
    assert!(matches!(
        store.update_entry(e),
        Err(StoreError::NotFound { kind: "registration entry", id }) if id == "missing"
    ));
}

pub(super) fn batch_create_reports_per_item_in_order(store: Store) {
    let existing = add_entry(&*store, "/db", "/agent", &["unix:uid:5"]);

    let mut explicit = entry("/x", "/agent", &["unix:uid:7"]);
    explicit.id = "fixed-id".into();
    let mut explicit_again = entry("/y", "/agent", &["unix:uid:8"]);
    explicit_again.id = "fixed-id".into();
    let batch = vec![
        entry("/a", "/agent", &["unix:uid:1", "unix:gid:2"]),
        // Same set in another order, with a repeat: similar to the first.
        entry("/a", "/agent", &["unix:gid:2", "unix:uid:1", "unix:uid:1"]),
        entry("/db", "/agent", &["unix:uid:5"]),
        entry("/none", "/agent", &[]),
        explicit,
        explicit_again,
        entry("/a", "/other-agent", &["unix:uid:1", "unix:gid:2"]),
    ];
    let results = store.create_entries(batch).unwrap();
    assert_eq!(results.len(), 7);
    let first = results[0].as_ref().unwrap();
    assert_eq!(first.revision, 1);
    assert!(matches!(&results[1], Err(StoreError::AlreadyExists { id, .. }) if id == &first.id));
    assert!(matches!(&results[2], Err(StoreError::AlreadyExists { id, .. }) if id == &existing.id));
    assert!(matches!(
        &results[3],
        Err(StoreError::Registration(e)) if e.field == "selectors"
    ));
    assert_eq!(results[4].as_ref().unwrap().id, "fixed-id");
    assert!(matches!(
        &results[5],
        Err(StoreError::AlreadyExists { kind: "registration entry", id }) if id == "fixed-id"
    ));
    assert!(results[6].is_ok());
    assert_eq!(store.count_entries().unwrap(), 4);
    // The message names the existing entry.
    let msg = results[1].as_ref().unwrap_err().to_string();
    assert!(msg.contains(&first.id), "{msg}");
}

pub(super) fn update_keeps_indexes_consistent(store: Store) {
    let e = add_entry(&*store, "/web", "/agent-a", &["unix:uid:1", "unix:gid:1"]);
    let other = add_entry(&*store, "/web", "/agent-b", &["unix:uid:2"]);

    let mut moved = e.clone();
    moved.parent_id = id("/agent-b");
    moved.selectors = vec![sel("unix:uid:3"), sel("unix:gid:1")];
    store.update_entry(moved).unwrap();

    assert!(store.entries_by_parent(&id("/agent-a")).unwrap().is_empty());
    assert_eq!(
        ids_by_parent(&store, "/agent-b"),
        BTreeSet::from([e.id.clone(), other.id.clone()])
    );
    assert!(store
        .entries_by_selector(&sel("unix:uid:1"))
        .unwrap()
        .is_empty());
    let ids = |s| -> Vec<String> {
        store
            .entries_by_selector(&sel(s))
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(ids("unix:uid:3"), vec![e.id.clone()]);
    assert_eq!(ids("unix:gid:1"), vec![e.id.clone()]);

    // The old identity is free again; the new one is taken.
    add_entry(&*store, "/web", "/agent-a", &["unix:uid:1", "unix:gid:1"]);
    assert!(matches!(
        store.create_entry(entry("/web", "/agent-b", &["unix:gid:1", "unix:uid:3"])),
        Err(StoreError::AlreadyExists { id, .. }) if id == e.id
    ));
    // An update that would duplicate another entry is refused.
    let mut clash = e.clone();
    clash.parent_id = id("/agent-b");
    clash.selectors = vec![sel("unix:uid:2")];
    assert!(matches!(
        store.update_entry(clash),
        Err(StoreError::AlreadyExists { id, .. }) if id == other.id
    ));
    assert_eq!(store.get_entry(&e.id).unwrap().unwrap().revision, 2);
}

fn listed(store: &Store, filter: &EntryFilter) -> BTreeSet<String> {
    let page = store.list_entries(filter, &PageRequest::default()).unwrap();
    assert_eq!(page.next_token, None);
    page.items
        .into_iter()
        .map(|e| e.spiffe_id.path().to_owned())
        .collect()
}

fn paths(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub(super) fn filters(store: Store) {
    for e in [
        entry("/a", "/agent1", &["unix:uid:1"]),
        entry("/b", "/agent1", &["unix:uid:1", "unix:gid:1"]),
        entry(
            "/c",
            "/agent2",
            &["unix:uid:1", "unix:gid:1", "unix:user:c"],
        ),
        entry("/d", "/agent2", &["unix:gid:2"]),
        entry("/a", "/agent2", &["unix:uid:9"]),
    ] {
        store.create_entry(e).unwrap();
    }
    let by_sel = |s: &[&str], how| EntryFilter {
        by_selectors: Some((s.iter().map(|s| sel(s)).collect(), how)),
        ..EntryFilter::default()
    };
    assert_eq!(listed(&store, &EntryFilter::default()).len(), 4);
    let f = EntryFilter {
        by_spiffe_id: Some(id("/a")),
        ..EntryFilter::default()
    };
    assert_eq!(
        store
            .list_entries(&f, &PageRequest::default())
            .unwrap()
            .items
            .len(),
        2
    );
    let f = EntryFilter {
        by_parent_id: Some(id("/agent1")),
        ..EntryFilter::default()
    };
    assert_eq!(listed(&store, &f), paths(&["/a", "/b"]));
    let f = EntryFilter {
        by_spiffe_id: Some(id("/a")),
        by_parent_id: Some(id("/agent2")),
        ..EntryFilter::default()
    };
    let page = store.list_entries(&f, &PageRequest::default()).unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].selectors, vec![sel("unix:uid:9")]);

    let given = ["unix:gid:1", "unix:uid:1"];
    assert_eq!(
        listed(&store, &by_sel(&given, SelectorMatch::Exact)),
        paths(&["/b"])
    );
    assert_eq!(
        listed(&store, &by_sel(&given, SelectorMatch::Subset)),
        paths(&["/a", "/b"])
    );
    assert_eq!(
        listed(&store, &by_sel(&given, SelectorMatch::Superset)),
        paths(&["/b", "/c"])
    );
    assert_eq!(
        listed(&store, &by_sel(&given, SelectorMatch::Any)),
        paths(&["/a", "/b", "/c"])
    );
    assert_eq!(
        listed(&store, &by_sel(&["unix:gid:2"], SelectorMatch::Any)),
        paths(&["/d"])
    );
    // Filters combine with AND, also through the parent index.
    let f = EntryFilter {
        by_parent_id: Some(id("/agent2")),
        by_selectors: Some((vec![sel("unix:uid:1")], SelectorMatch::Superset)),
        ..EntryFilter::default()
    };
    assert_eq!(listed(&store, &f), paths(&["/c"]));

    let by_selector: BTreeSet<String> = store
        .entries_by_selector(&sel("unix:gid:1"))
        .unwrap()
        .into_iter()
        .map(|e| e.spiffe_id.path().to_owned())
        .collect();
    assert_eq!(by_selector, paths(&["/b", "/c"]));
}

pub(super) fn paging_returns_every_entry_once(store: Store) {
    let batch = (0..1050)
        .map(|i| entry(&format!("/w{i}"), "/agent", &[&format!("unix:uid:{i}")]))
        .collect();
    let created = store.create_entries(batch).unwrap();
    assert!(created.iter().all(|r| r.is_ok()));

    for filter in [
        EntryFilter::default(),
        EntryFilter {
            by_parent_id: Some(id("/agent")),
            ..EntryFilter::default()
        },
    ] {
        let mut seen = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let page = store
                .list_entries(&filter, &PageRequest { size: 100, token })
                .unwrap();
            assert!(page.items.len() <= 100);
            pages += 1;
            seen.extend(page.items.into_iter().map(|e| e.id));
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages, 11);
        assert_eq!(seen.len(), 1050);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, seen, "ordered by id, no repeats");
    }

    // Size 0 means the default page size.
    let page = store
        .list_entries(&EntryFilter::default(), &PageRequest::default())
        .unwrap();
    assert_eq!(page.items.len(), crate::store::DEFAULT_PAGE_SIZE);
    assert!(page.next_token.is_some());
}

pub(super) fn batch_of_100_000_entries(store: Store) {
    let batch = (0..100_000)
        .map(|i| {
            entry(
                &format!("/w{i}"),
                &format!("/agent{}", i % 100),
                &["k8s:ns:default", &format!("k8s:pod:{i}")],
            )
        })
        .collect();
    let results = store.create_entries(batch).unwrap();
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(store.count_entries().unwrap(), 100_000);
    assert_eq!(store.entries_by_parent(&id("/agent7")).unwrap().len(), 1000);
}

pub(super) fn pruning_removes_expired_entries_with_their_index_rows(store: Store) {
    let expiring = |path: &str, uid: &str, expires_at: i64| {
        let mut e = entry(path, "/agent", &[uid]);
        e.expires_at = Some(expires_at);
        store.create_entry(e).unwrap()
    };
    let old = expiring("/old", "unix:uid:1", 100);
    let due = expiring("/due", "unix:uid:2", 200);
    let later = expiring("/later", "unix:uid:3", 201);
    let never = expiring("/never", "unix:uid:4", 0);

    // Expired from its expiry second on, as authorization sees it.
    let pruned = store.prune_expired_entries(200).unwrap();
    let ids: BTreeSet<_> = pruned.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, BTreeSet::from([old.id.clone(), due.id.clone()]));
    assert_eq!(store.get_entry(&old.id).unwrap(), None);
    assert!(store
        .entries_by_selector(&sel("unix:uid:1"))
        .unwrap()
        .is_empty());
    assert_eq!(
        ids_by_parent(&store, "/agent"),
        BTreeSet::from([later.id.clone(), never.id.clone()])
    );
    // The same entry can be registered again once pruned (no stale
    // similarity row), and a second pass finds nothing more.
    expiring("/old", "unix:uid:1", 10_000);
    assert!(store.prune_expired_entries(200).unwrap().is_empty());
    assert_eq!(store.count_entries().unwrap(), 3);
}

/// One call lists the entries under any of several parents (one nesting
/// level of an agent's set), each once, and nothing else.
pub(super) fn entries_by_parents_lists_every_level_entry_once(store: Store) {
    let a = add_entry(&*store, "/a1", "/agent-a", &["unix:uid:1"]);
    let b = add_entry(&*store, "/b1", "/agent-b", &["unix:uid:2"]);
    let b2 = add_entry(&*store, "/b2", "/agent-b", &["unix:uid:3"]);
    add_entry(&*store, "/c1", "/agent-c", &["unix:uid:4"]);
    let parents = [id("/agent-a"), id("/agent-b"), id("/nobody")];
    let got: Vec<String> = store
        .entries_by_parents(&parents)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let mut want = vec![a.id, b.id, b2.id];
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "listed {got:?}");
    assert!(store.entries_by_parents(&[]).unwrap().is_empty());
}

/// One call reads the entries of several ids, each once however often it
/// is named, and skips the ids that name no entry.
pub(super) fn get_entries_reads_each_existing_entry_once(store: Store) {
    let a = add_entry(&*store, "/a1", "/agent-a", &["unix:uid:1"]);
    let b = add_entry(&*store, "/b1", "/agent-b", &["unix:uid:2"]);
    add_entry(&*store, "/c1", "/agent-c", &["unix:uid:3"]);
    let ids = [
        a.id.clone(),
        "missing".to_string(),
        b.id.clone(),
        a.id.clone(),
    ];
    let mut got: Vec<RegistrationEntry> = store.get_entries(&ids).unwrap();
    got.sort_by(|x, y| x.id.cmp(&y.id));
    let mut want = vec![a, b];
    want.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(got, want);
    assert!(store.get_entries(&[]).unwrap().is_empty());
}

/// The IDs of the entries the parent index lists under `parent`.
fn ids_by_parent(store: &Store, parent: &str) -> BTreeSet<String> {
    let under = store.entries_by_parent(&id(parent)).unwrap();
    under.into_iter().map(|e| e.id).collect()
}
