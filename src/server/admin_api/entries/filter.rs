//! The filter of a ListEntries request, checked and turned into the
//! store's [`EntryFilter`]; every refusal names the filter field at fault.

use crate::proto::admin;
use crate::server::validate::{self, ValidationError};
use crate::spiffe::SpiffeId;
use crate::store::{EntryFilter, SelectorMatch};

/// The store filter of a list request; any ID is accepted (a filter on
/// another trust domain simply matches nothing) but must parse.
pub(super) fn entry_filter(
    filter: Option<admin::list_entries_request::Filter>,
) -> Result<EntryFilter, ValidationError> {
    let Some(f) = filter else {
        return Ok(EntryFilter::default());
    };
    let id = |field: &str, value: &str| -> Result<Option<SpiffeId>, ValidationError> {
        if value.is_empty() {
            return Ok(None);
        }
        SpiffeId::parse(value).map(Some).map_err(|e| {
            ValidationError::new(field, format!("{value:?} is not a valid SPIFFE ID: {e}"))
        })
    };
    let by_selectors = match f.by_selectors {
        None => None,
        Some(m) => {
            if m.selectors.is_empty() {
                return Err(ValidationError::new(
                    "filter.by_selectors.selectors",
                    "must contain at least one selector",
                ));
            }
            let selectors = m
                .selectors
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    validate::validate_selector(&format!("filter.by_selectors.selectors[{i}]"), s)
                })
                .collect::<Result<Vec<_>, _>>()?;
            use admin::selector_match::MatchBehavior;
            let how = match MatchBehavior::try_from(m.r#match) {
                Ok(MatchBehavior::MatchExact) => SelectorMatch::Exact,
                Ok(MatchBehavior::MatchSubset) => SelectorMatch::Subset,
                Ok(MatchBehavior::MatchSuperset) => SelectorMatch::Superset,
                Ok(MatchBehavior::MatchAny) => SelectorMatch::Any,
                Err(_) => {
                    return Err(ValidationError::new(
                        "filter.by_selectors.match",
                        format!("{} is not a known match behavior (0-3)", m.r#match),
                    ))
                }
            };
            Some((selectors, how))
        }
    };
    Ok(EntryFilter {
        by_spiffe_id: id("filter.by_spiffe_id", &f.by_spiffe_id)?,
        by_parent_id: id("filter.by_parent_id", &f.by_parent_id)?,
        by_selectors,
    })
}
