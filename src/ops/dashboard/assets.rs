//! The page and its assets, embedded in the binary: plain HTML, one style
//! sheet and two small vanilla scripts (`ui.js`: the helpers that build
//! DOM and write times; `app.js`: the views, navigation and live updates), nothing fetched from elsewhere, so
//! the dashboard works offline and installs with the binary.

use http::{Response, StatusCode};

use super::{respond, text, whole, Body};

const INDEX: &str = include_str!("assets/index.html");
const HELPERS: &str = include_str!("assets/ui.js");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");
const ICON: &str = include_str!("assets/icon.svg");

/// The asset at `path`, or 404.
pub(super) fn answer(path: &str) -> Response<Body> {
    let (content_type, body) = match path {
        "/" | "/dashboard" | "/dashboard/" => ("text/html; charset=utf-8", INDEX),
        "/dashboard/ui.js" => ("text/javascript; charset=utf-8", HELPERS),
        "/dashboard/app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/dashboard/app.css" => ("text/css; charset=utf-8", STYLE),
        "/dashboard/icon.svg" => ("image/svg+xml", ICON),
        _ => return text(StatusCode::NOT_FOUND, "not found\n".into()),
    };
    respond(StatusCode::OK, content_type, whole(body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for asset in [
            super::INDEX,
            super::HELPERS,
            super::SCRIPT,
            super::STYLE,
            super::ICON,
        ] {
            for remote in ["http://", "https://", "//cdn", "@import"] {
                let uses = asset
                    .lines()
                    .filter(|l| l.contains(remote))
                    // The SVG's own XML namespace is a name, not a fetch.
                    .any(|l| !l.contains("xmlns=\"http://www.w3.org/2000/svg\""));
                assert!(!uses, "an asset refers to {remote}");
            }
        }
        assert!(super::INDEX.contains("/dashboard/ui.js"));
        assert!(super::INDEX.contains("/dashboard/app.js"));
    }
}
