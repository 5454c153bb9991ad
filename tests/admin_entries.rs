//! The Entries service over a real gRPC connection on a Unix socket:
//! create → list (paged) → update → delete, per-item batch results in
//! request order, and every kind of bad input refused with the field named.

mod harness;

use std::collections::HashSet;

use harness::admin::{assert_item, assert_status, entry, sel, AdminApi};
use herald::proto::admin;
use herald::server::state::ServerEvent;
use herald::spiffe::{Bundle, TrustDomain};
use tonic::Code;

#[tokio::test]
async fn create_list_update_delete_round_trip() {
    let h = AdminApi::start().await;
    let mut events = h.state.subscribe();
    let mut c = h.entries();

    let mut e = entry("web");
    e.x509_svid_ttl = 120;
    e.dns_names = vec!["web.example.org".into()];
    e.hint = "web".into();
    let res = c
        .batch_create_entry(admin::BatchCreateEntryRequest { entries: vec![e] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results.len(), 1);
    assert_item(&res.results[0].status, Code::Ok, "");
    let created = res.results[0].entry.clone().unwrap();
    assert!(!created.id.is_empty());
    assert_eq!(created.revision_number, 1);
    assert!(created.created_at > 0);
    assert_eq!(created.x509_svid_ttl, 120);
    assert_entries_event(events.try_recv().unwrap());

    let got = c
        .get_entry(admin::GetEntryRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);

    let listed = c
        .list_entries(admin::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries, vec![created.clone()]);
    assert!(listed.next_page_token.is_empty());

    // Update is a whole-entry replace: fields left out are cleared.
    let mut replacement = entry("web");
    replacement.id = created.id.clone();
    replacement.selectors = vec![sel("unix", "uid:1"), sel("unix", "gid:2")];
    replacement.admin = true;
    let res = c
        .batch_update_entry(admin::BatchUpdateEntryRequest {
            entries: vec![replacement],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::Ok, "");
    let updated = res.results[0].entry.clone().unwrap();
    assert_eq!(updated.revision_number, 2);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(updated.x509_svid_ttl, 0);
    assert!(updated.dns_names.is_empty() && updated.hint.is_empty());
    assert!(updated.admin);
    assert_eq!(updated.selectors.len(), 2);
    assert_entries_event(events.try_recv().unwrap());

    let count = c
        .count_entries(admin::CountEntriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 1);

    let res = c
        .batch_delete_entry(admin::BatchDeleteEntryRequest {
            ids: vec![created.id.clone(), "missing".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].id, created.id);
    assert_item(&res.results[0].status, Code::Ok, "");
    assert_eq!(res.results[1].id, "missing");
    assert_item(
        &res.results[1].status,
        Code::NotFound,
        "entry missing not found",
    );
    assert_entries_event(events.try_recv().unwrap());

    assert_status(
        c.get_entry(admin::GetEntryRequest {
            id: created.id.clone(),
        })
        .await,
        Code::NotFound,
        &format!("entry {} not found", created.id),
    );
}

#[tokio::test]
async fn batch_create_answers_per_item_in_request_order() {
    let h = AdminApi::start().await;
    let mut events = h.state.subscribe();
    let mut c = h.entries();
    let mut bad = entry("bad");
    bad.spiffe_id = "spiffe://Example.org/x".into();
    let mut custom = entry("custom");
    custom.id = "my-id".into();
    let mut custom_again = entry("other");
    custom_again.id = "my-id".into();
    let res = c
        .batch_create_entry(admin::BatchCreateEntryRequest {
            entries: vec![
                entry("a"),
                bad,
                entry("a"),
                custom,
                entry("b"),
                custom_again,
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let r = &res.results;
    assert_eq!(r.len(), 6);
    assert_item(&r[0].status, Code::Ok, "");
    let first = r[0].entry.clone().unwrap();
    assert_item(
        &r[1].status,
        Code::InvalidArgument,
        "spiffe_id: \"spiffe://Example.org/x\" is not a valid SPIFFE ID",
    );
    assert!(r[1].entry.is_none());
    // A similar entry answers AlreadyExists with the entry it duplicates.
    assert_item(&r[2].status, Code::AlreadyExists, &first.id);
    assert_eq!(r[2].entry.as_ref().unwrap(), &first);
    assert_item(&r[3].status, Code::Ok, "");
    assert_eq!(r[3].entry.as_ref().unwrap().id, "my-id");
    assert_item(&r[4].status, Code::Ok, "");
    assert_item(&r[5].status, Code::AlreadyExists, "my-id");
    assert_eq!(
        r[5].entry.as_ref().unwrap().spiffe_id,
        "spiffe://example.org/custom"
    );

    // One event for the whole batch.
    assert_entries_event(events.try_recv().unwrap());
    assert!(events.try_recv().is_err());

    // A batch that creates nothing publishes nothing.
    let res = c
        .batch_create_entry(admin::BatchCreateEntryRequest {
            entries: vec![entry("a")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(
        &res.results[0].status,
        Code::AlreadyExists,
        "already exists",
    );
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn listing_1050_entries_by_100_returns_each_once() {
    let h = AdminApi::start().await;
    let mut c = h.entries();
    let entries: Vec<_> = (0..1050)
        .map(|i| {
            let mut e = entry(&format!("w/{i}"));
            e.selectors = vec![sel("unix", &format!("uid:{i}")), sel("k8s", "ns:prod")];
            if i % 2 == 0 {
                e.parent_id = "spiffe://example.org/herald/agent/join_token/even".into();
            }
            e
        })
        .collect();
    let res = c
        .batch_create_entry(admin::BatchCreateEntryRequest { entries })
        .await
        .unwrap()
        .into_inner();
    assert!(res
        .results
        .iter()
        .all(|r| r.status.as_ref().unwrap().code == 0));

    let list_all = |filter: Option<admin::list_entries_request::Filter>, page_size| {
        let mut c = c.clone();
        async move {
            let mut seen = Vec::new();
            let mut token = String::new();
            let mut pages = 0;
            loop {
                let page = c
                    .list_entries(admin::ListEntriesRequest {
                        filter: filter.clone(),
                        page_size,
                        page_token: token.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                pages += 1;
                assert!(page_size == 0 || page.entries.len() <= page_size as usize);
                seen.extend(page.entries.into_iter().map(|e| e.spiffe_id));
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            (seen, pages)
        }
    };
    let (seen, pages) = list_all(None, 100).await;
    assert_eq!(seen.len(), 1050);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 1050);
    assert!((11..=12).contains(&pages), "{pages} pages");

    let (seen, _) = list_all(
        Some(admin::list_entries_request::Filter {
            by_parent_id: "spiffe://example.org/herald/agent/join_token/even".into(),
            ..Default::default()
        }),
        100,
    )
    .await;
    assert_eq!(seen.len(), 525);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 525);

    let by_selectors = |selectors, m: admin::selector_match::MatchBehavior| {
        Some(admin::list_entries_request::Filter {
            by_selectors: Some(admin::SelectorMatch {
                selectors,
                r#match: m as i32,
            }),
            ..Default::default()
        })
    };
    use admin::selector_match::MatchBehavior as M;
    let (seen, _) = list_all(
        by_selectors(vec![sel("unix", "uid:7")], M::MatchSuperset),
        100,
    )
    .await;
    assert_eq!(seen, vec!["spiffe://example.org/w/7".to_string()]);
    let (seen, _) = list_all(by_selectors(vec![sel("unix", "uid:7")], M::MatchExact), 100).await;
    assert!(seen.is_empty());
    let (seen, _) = list_all(
        by_selectors(
            vec![sel("unix", "uid:7"), sel("k8s", "ns:prod"), sel("x", "y")],
            M::MatchSubset,
        ),
        100,
    )
    .await;
    assert_eq!(seen, vec!["spiffe://example.org/w/7".to_string()]);
    let (seen, _) = list_all(by_selectors(vec![sel("k8s", "ns:prod")], M::MatchAny), 500).await;
    assert_eq!(seen.len(), 1050);
    let (seen, _) = list_all(
        Some(admin::list_entries_request::Filter {
            by_spiffe_id: "spiffe://example.org/w/1049".into(),
            ..Default::default()
        }),
        0,
    )
    .await;
    assert_eq!(seen.len(), 1);

    // Page size 0 means 500.
    let page = c
        .list_entries(admin::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 500);
    let count = c
        .count_entries(admin::CountEntriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 1050);
}

#[tokio::test]
async fn bad_entries_are_refused_naming_the_field() {
    let h = AdminApi::start().await;
    let mut c = h.entries();
    // A bundle for other.org makes it a valid federates_with target.
    let other = TrustDomain::new("other.org").unwrap();
    h.state.store.set_bundle(&Bundle::new(other)).unwrap();

    let mut cases: Vec<(admin::Entry, &str)> = Vec::new();
    let mut e = entry("x");
    e.spiffe_id = "spiffe://Example.org/x".into();
    cases.push((
        e,
        "spiffe_id: \"spiffe://Example.org/x\" is not a valid SPIFFE ID",
    ));
    let mut e = entry("x");
    e.spiffe_id = "spiffe://example.org/herald/agent/x".into();
    cases.push((
        e,
        "spiffe_id: spiffe://example.org/herald/agent/x is under the reserved path",
    ));
    let mut e = entry("x");
    e.parent_id = "spiffe://unknown.org/agent".into();
    cases.push((
        e,
        "parent_id: spiffe://unknown.org/agent is not in trust domain example.org",
    ));
    let mut e = entry("x");
    e.selectors.clear();
    cases.push((e, "selectors: must contain at least one selector"));
    let mut e = entry("x");
    e.selectors = vec![sel("unix", "")];
    cases.push((e, "selectors[0].value: must not be empty"));
    let mut e = entry("x");
    e.x509_svid_ttl = -5;
    cases.push((e, "x509_svid_ttl: -5 out of range"));
    let mut e = entry("x");
    e.jwt_svid_ttl = 31_536_001;
    cases.push((e, "jwt_svid_ttl: 31536001 out of range"));
    let mut e = entry("x");
    e.dns_names = vec!["no spaces.org".into()];
    cases.push((e, "dns_names[0]"));
    let mut e = entry("x");
    e.federates_with = vec!["third.org".into()];
    cases.push((
        e,
        "federates_with: no bundle for trust domain third.org; federate with it first",
    ));
    let mut e = entry("x");
    e.hint = "h".repeat(1025);
    cases.push((e, "hint:"));
    let mut e = entry("x");
    e.expires_at = -1;
    cases.push((e, "expires_at:"));

    let (entries, needles): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
    let res = c
        .batch_create_entry(admin::BatchCreateEntryRequest {
            entries: entries.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    for (r, needle) in res.results.iter().zip(&needles) {
        assert_item(&r.status, Code::InvalidArgument, needle);
    }

    // Update checks the same rules, plus the id.
    let created = c
        .batch_create_entry(admin::BatchCreateEntryRequest {
            entries: vec![entry("ok")],
        })
        .await
        .unwrap()
        .into_inner()
        .results[0]
        .entry
        .clone()
        .unwrap();
    let updates: Vec<_> = entries
        .into_iter()
        .map(|mut e| {
            e.id = created.id.clone();
            e
        })
        .collect();
    let res = c
        .batch_update_entry(admin::BatchUpdateEntryRequest { entries: updates })
        .await
        .unwrap()
        .into_inner();
    for (r, needle) in res.results.iter().zip(&needles) {
        assert_item(&r.status, Code::InvalidArgument, needle);
    }
    let mut unknown = entry("ok");
    unknown.id = "nope".into();
    let mut good = entry("ok");
    good.id = created.id.clone();
    good.federates_with = vec!["other.org".into()];
    let res = c
        .batch_update_entry(admin::BatchUpdateEntryRequest {
            entries: vec![unknown, entry("no-id"), good],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(
        &res.results[0].status,
        Code::NotFound,
        "entry nope not found",
    );
    assert_item(
        &res.results[1].status,
        Code::InvalidArgument,
        "id: must not be empty",
    );
    assert_item(&res.results[2].status, Code::Ok, "");
    assert_eq!(
        res.results[2].entry.as_ref().unwrap().federates_with,
        vec!["other.org".to_string()]
    );

    let res = c
        .batch_delete_entry(admin::BatchDeleteEntryRequest {
            ids: vec!["".into(), "ghost".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_item(&res.results[0].status, Code::InvalidArgument, "ids:");
    assert_item(
        &res.results[1].status,
        Code::NotFound,
        "entry ghost not found",
    );

    assert_status(
        c.get_entry(admin::GetEntryRequest { id: String::new() })
            .await,
        Code::InvalidArgument,
        "id: must not be empty",
    );
    assert_status(
        c.get_entry(admin::GetEntryRequest { id: "ghost".into() })
            .await,
        Code::NotFound,
        "entry ghost not found",
    );

    for page_size in [-1, 10_001] {
        assert_status(
            c.list_entries(admin::ListEntriesRequest {
                page_size,
                ..Default::default()
            })
            .await,
            Code::InvalidArgument,
            "page_size:",
        );
    }
    let filtered = |f: admin::list_entries_request::Filter| admin::ListEntriesRequest {
        filter: Some(f),
        ..Default::default()
    };
    assert_status(
        c.list_entries(filtered(admin::list_entries_request::Filter {
            by_spiffe_id: "spiffe://Example.org/x".into(),
            ..Default::default()
        }))
        .await,
        Code::InvalidArgument,
        "filter.by_spiffe_id:",
    );
    assert_status(
        c.list_entries(filtered(admin::list_entries_request::Filter {
            by_parent_id: "not an id".into(),
            ..Default::default()
        }))
        .await,
        Code::InvalidArgument,
        "filter.by_parent_id:",
    );
    assert_status(
        c.list_entries(filtered(admin::list_entries_request::Filter {
            by_selectors: Some(admin::SelectorMatch {
                selectors: vec![],
                r#match: 0,
            }),
            ..Default::default()
        }))
        .await,
        Code::InvalidArgument,
        "filter.by_selectors.selectors:",
    );
    assert_status(
        c.list_entries(filtered(admin::list_entries_request::Filter {
            by_selectors: Some(admin::SelectorMatch {
                selectors: vec![sel("unix", "uid:1")],
                r#match: 9,
            }),
            ..Default::default()
        }))
        .await,
        Code::InvalidArgument,
        "filter.by_selectors.match:",
    );
}

/// 100,000 entries in one call: one transaction and one flush.
#[tokio::test]
async fn a_100k_batch_is_one_call() {
    let h = AdminApi::start().await;
    let mut c = h.entries();
    let entries: Vec<_> = (0..100_000)
        .map(|i| {
            let mut e = entry(&format!("bulk/{i}"));
            e.selectors = vec![sel("unix", &format!("uid:{i}"))];
            e
        })
        .collect();
    let started = std::time::Instant::now();
    let res = c
        .batch_create_entry(admin::BatchCreateEntryRequest { entries })
        .await
        .unwrap()
        .into_inner();
    eprintln!("100,000 entries created in {:?}", started.elapsed());
    assert_eq!(res.results.len(), 100_000);
    assert!(res
        .results
        .iter()
        .all(|r| r.status.as_ref().unwrap().code == 0));
    let count = c
        .count_entries(admin::CountEntriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(count.count, 100_000);
}

/// Entry writes through the admin API announce what they wrote
/// (`EntriesWritten`, so only the Sync streams they touch wake); a plain
/// `EntriesChanged` also tells every stream.
fn assert_entries_event(event: ServerEvent) {
    assert!(
        matches!(
            event,
            ServerEvent::EntriesWritten(_) | ServerEvent::EntriesChanged
        ),
        "{event:?}"
    );
}
