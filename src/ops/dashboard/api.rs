//! The JSON endpoints the page reads, `/dashboard/api/<view>`: which view
//! a request asks for (with the entries' search and paging), and the answer
//! the role's [`Source`] makes of it. A bad query parameter gets 400 naming
//! it; an unknown view 404.

use http::{Response, StatusCode};
use hyper::body::Bytes;

use super::{respond, text, whole, Body, Source};

/// Longest search text.
const MAX_QUERY: usize = 256;
/// Entries per page unless asked otherwise, and at most.
const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 200;

/// One view of the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The trust domain at a glance: authorities and their rotation, the
    /// bundle and who acknowledged it, the outage budget, counts.
    Overview,
    /// Every attested agent.
    Agents,
    /// One page of the entries matching a search.
    Entries(EntryQuery),
    /// Federation relationships and foreign bundles.
    Federation,
    /// The findings of `herald check`.
    Findings,
}

/// Which field of an entry a search looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EntryField {
    /// The SPIFFE ID, the parent ID or a selector.
    #[default]
    Any,
    /// The SPIFFE ID the entry grants.
    SpiffeId,
    /// A selector, as `type:value`.
    Selector,
    /// The parent ID.
    Parent,
}

/// A search of the entries (`?q=&field=&page=&page_size=`): entries whose
/// field contains `q` (any case), one page of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryQuery {
    /// The text searched for; empty matches every entry.
    pub q: String,
    /// Where it is searched.
    pub field: EntryField,
    /// The page, from 0.
    pub page: usize,
    /// Entries per page.
    pub page_size: usize,
}

impl Default for EntryQuery {
    fn default() -> Self {
        EntryQuery {
            q: String::new(),
            field: EntryField::Any,
            page: 0,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl EntryQuery {
    /// Whether an entry with these fields (selectors as `type:value`)
    /// matches.
    pub fn matches(&self, spiffe_id: &str, parent_id: &str, selectors: &[String]) -> bool {
        if self.q.is_empty() {
            return true;
        }
        let needle = self.q.to_lowercase();
        let has = |s: &str| s.to_lowercase().contains(&needle);
        let in_selectors = || selectors.iter().any(|s| has(s));
        match self.field {
            EntryField::Any => has(spiffe_id) || has(parent_id) || in_selectors(),
            EntryField::SpiffeId => has(spiffe_id),
            EntryField::Parent => has(parent_id),
            EntryField::Selector => in_selectors(),
        }
    }

    /// The positions of this page among `total` matches (empty past the
    /// end).
    pub fn window(&self, total: usize) -> std::ops::Range<usize> {
        let start = self.page.saturating_mul(self.page_size).min(total);
        start..start.saturating_add(self.page_size).min(total)
    }

    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut q = EntryQuery::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "q" if value.chars().count() > MAX_QUERY => {
                    return Err(format!("q: longer than {MAX_QUERY} characters"));
                }
                "q" => q.q = value.trim().to_string(),
                "field" => {
                    q.field = match value.as_ref() {
                        "" | "any" => EntryField::Any,
                        "spiffe_id" => EntryField::SpiffeId,
                        "selector" => EntryField::Selector,
                        "parent" => EntryField::Parent,
                        other => {
                            return Err(format!(
                                "field: {other:?} is not one of any, spiffe_id, selector, parent"
                            ))
                        }
                    }
                }
                "page" => {
                    q.page = value
                        .parse()
                        .map_err(|_| format!("page: {value:?} is not a page number (from 0)"))?
                }
                "page_size" => {
                    q.page_size = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                        .ok_or_else(|| {
                            format!("page_size: {value:?} is not 1 to {MAX_PAGE_SIZE}")
                        })?
                }
                // Unknown parameters (a cache buster, say) are ignored.
                _ => {}
            }
        }
        Ok(q)
    }
}

impl View {
    /// The view `/dashboard/api/<name>?<query>` asks for; `Ok(None)` for
    /// no view of that name, `Err` naming the bad parameter.
    pub fn parse(name: &str, query: Option<&str>) -> Result<Option<View>, String> {
        Ok(Some(match name {
            "overview" => View::Overview,
            "agents" => View::Agents,
            "entries" => View::Entries(EntryQuery::parse(query)?),
            "federation" => View::Federation,
            "findings" => View::Findings,
            _ => return Ok(None),
        }))
    }
}

/// Answers `/dashboard/api/<name>?<query>` from `source`.
pub(super) async fn answer(source: &dyn Source, name: &str, query: Option<&str>) -> Response<Body> {
    let view = match View::parse(name, query) {
        Ok(Some(view)) => view,
        Ok(None) => return text(StatusCode::NOT_FOUND, "no such view\n".into()),
        Err(why) => {
            return json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({ "error": why }),
            )
        }
    };
    match source.view(view).await {
        Ok(value) => json(StatusCode::OK, &value),
        Err(e) => {
            tracing::warn!(error = %e, view = name, "dashboard view failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({ "error": e.to_string() }),
            )
        }
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    // A Value always encodes.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    respond(status, "application/json", whole(Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_and_their_parameters_parse_and_bad_ones_are_named() {
        assert_eq!(View::parse("overview", None), Ok(Some(View::Overview)));
        assert_eq!(View::parse("secrets", None), Ok(None));
        let q = View::parse(
            "entries",
            Some("q=web%20&field=selector&page=2&page_size=10&_=1"),
        );
        let want = EntryQuery {
            q: "web".into(),
            field: EntryField::Selector,
            page: 2,
            page_size: 10,
        };
        assert_eq!(q, Ok(Some(View::Entries(want))));
        for (query, field) in [
            ("page=-1", "page:"),
            ("page_size=0", "page_size:"),
            ("page_size=100000", "page_size:"),
            ("field=id", "field:"),
        ] {
            let err = View::parse("entries", Some(query)).unwrap_err();
            assert!(err.starts_with(field), "{query}: {err}");
        }
        let long = format!("q={}", "a".repeat(MAX_QUERY + 1));
        assert!(View::parse("entries", Some(&long))
            .unwrap_err()
            .starts_with("q:"));
    }

    #[test]
    fn a_search_looks_in_the_field_it_names_in_any_case() {
        let sel = ["unix:uid:1000".to_string()];
        let entry = (
            "spiffe://example.org/Web",
            "spiffe://example.org/herald/agent/a",
            &sel[..],
        );
        let search = |q: &str, field| EntryQuery {
            q: q.into(),
            field,
            ..EntryQuery::default()
        };
        let m = |q: &EntryQuery| q.matches(entry.0, entry.1, entry.2);
        assert!(m(&search("", EntryField::Selector)));
        assert!(m(&search("web", EntryField::Any)));
        assert!(m(&search("uid:1000", EntryField::Any)));
        assert!(m(&search("UID:1000", EntryField::Selector)));
        assert!(!m(&search("uid:1000", EntryField::SpiffeId)));
        assert!(m(&search("agent/a", EntryField::Parent)));
        assert!(!m(&search("agent/a", EntryField::SpiffeId)));
    }

    #[test]
    fn pages_are_windows_that_stop_at_the_end() {
        let q = |page| EntryQuery {
            page,
            page_size: 10,
            ..EntryQuery::default()
        };
        assert_eq!(q(0).window(25), 0..10);
        assert_eq!(q(2).window(25), 20..25);
        assert_eq!(q(3).window(25), 25..25);
        assert_eq!(q(usize::MAX).window(25), 25..25);
    }
}
