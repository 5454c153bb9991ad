//! Lists that the admin API hands out a page at a time: following the
//! pages to the end, and the plain `list` commands (agents, federation
//! relationships, federated bundles), which take no filter and print every
//! record.

use super::admin_client::{AdminArgs, AdminClient};
use super::print::{print_list, Listed};
use super::CliError;
use crate::proto::admin;

/// Follows a paged list to its end: `fetch` gets the page at a token and
/// returns its items and the next token (empty at the end).
pub(super) fn collect_pages<T>(
    mut fetch: impl FnMut(String) -> Result<(Vec<T>, String), CliError>,
) -> Result<Vec<T>, CliError> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = fetch(token)?;
        all.extend(items);
        if next.is_empty() {
            return Ok(all);
        }
        token = next;
    }
}

/// A list call without a filter: the request for the page at a token, and
/// the call that fetches it.
pub(super) trait PagedList {
    /// What the list holds.
    type Item;
    /// One page and the next page's token (empty at the end).
    fn page(client: &AdminClient, token: String) -> Result<(Vec<Self::Item>, String), CliError>;
}

/// One `PagedList` per line: request => service.method -> field: item.
macro_rules! paged_lists {
    ($($req:ident => $svc:ident.$call:ident -> $field:ident: $item:ident,)*) => {$(
        impl PagedList for admin::$req {
            type Item = admin::$item;
            fn page(
                client: &AdminClient,
                page_token: String,
            ) -> Result<(Vec<admin::$item>, String), CliError> {
                let req = admin::$req { page_size: 0, page_token };
                let page = client.call(client.$svc().$call(req))?;
                Ok((page.$field, page.next_page_token))
            }
        }
    )*};
}

paged_lists! {
    ListAgentsRequest => agents.list_agents -> agents: Agent,
    ListFederatedBundlesRequest => federated_bundles.list_federated_bundles -> bundles: Bundle,
    ListFederationRelationshipsRequest =>
        federation.list_federation_relationships -> federation_relationships: FederationRelationship,
}

/// A `list` command: every record of `L`, printed as `args` say.
pub(super) fn list_command<L: PagedList>(args: &AdminArgs) -> Result<(), CliError>
where
    L::Item: Listed,
{
    let client = args.connect()?;
    let all = collect_pages(|token| L::page(&client, token))?;
    print_list(args.output, &all)
}
