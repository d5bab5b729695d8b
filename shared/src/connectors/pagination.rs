//! Pagination: where the next request goes (checkpointed between
//! invocations) and how a page's body says so, for every style a source
//! may use (cursor in the body, next link, Link header, page number,
//! offset, starting-after, a cursor header, sync tokens).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::upstream;
use super::spec::{Pagination, SourceSpec};
use crate::error::Result;

/// Where the next request goes; checkpointed between invocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageState {
    First,
    Cursor(String),
    Url(String),
    Number(u64),
    Offset(u64),
}

/// One fetched page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub next: Option<PageState>,
    /// The token for the next incremental run (sync-token sources).
    pub sync_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Page(Page),
    /// The source no longer honours our sync token (HTTP 410): resync.
    Gone,
}

/// What a run asks for besides the page.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// Incremental lower bound, already formatted for the source.
    pub since: Option<String>,
    pub sync_token: Option<String>,
}

impl Page {
    pub(super) fn parse(
        spec: &SourceSpec,
        state: &PageState,
        body: Value,
        header_cursor: Option<String>,
        link_next: Option<String>,
    ) -> Result<Page> {
        let items = if spec.records.is_empty() {
            Some(&body)
        } else {
            body.pointer(&spec.records)
        };
        let items = match items {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::Null) | None
                if matches!(body, Value::Object(_)) && spec.records.is_empty() =>
            {
                Vec::new()
            }
            _ => {
                return Err(upstream(
                    "source",
                    format!("malformed page: no array at {:?}", spec.records),
                    true,
                ));
            }
        };
        // Cursors and tokens may come as text or as numbers.
        let text = |path: &str| match body.pointer(path) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let full = spec
            .page_size
            .is_none_or(|size| items.len() >= size as usize)
            && !items.is_empty();
        let mut sync_token = None;
        let next = match &spec.pagination {
            None | Some(Pagination::None) => None,
            Some(Pagination::CursorBody {
                cursor_path,
                has_more_path,
                ..
            }) => {
                let more = has_more_path
                    .as_ref()
                    .is_none_or(|p| body.pointer(p) == Some(&Value::Bool(true)));
                text(cursor_path)
                    .filter(|c| more && !c.is_empty())
                    .map(PageState::Cursor)
            }
            Some(Pagination::NextLink { path }) => {
                text(path).filter(|l| !l.is_empty()).map(PageState::Url)
            }
            Some(Pagination::LinkHeader) => link_next.map(PageState::Url),
            Some(Pagination::PageNumber { start, .. }) => full.then(|| {
                PageState::Number(match state {
                    PageState::Number(n) => n + 1,
                    _ => start + 1,
                })
            }),
            Some(Pagination::Offset { .. }) => full.then(|| {
                PageState::Offset(match state {
                    PageState::Offset(n) => n + items.len() as u64,
                    _ => items.len() as u64,
                })
            }),
            Some(Pagination::StartingAfter { has_more_path, .. }) => {
                let more = body.pointer(has_more_path) == Some(&Value::Bool(true));
                let last = items
                    .last()
                    .and_then(|i| i.pointer(&spec.id))
                    .and_then(Value::as_str);
                last.filter(|_| more)
                    .map(|id| PageState::Cursor(id.to_owned()))
            }
            Some(Pagination::HeaderCursor { .. }) => header_cursor
                .filter(|c| !c.is_empty())
                .map(PageState::Cursor),
            Some(Pagination::SyncToken {
                page_token_path,
                sync_token_path,
                ..
            }) => {
                sync_token = text(sync_token_path);
                text(page_token_path).map(PageState::Cursor)
            }
        };
        Ok(Page {
            items,
            next,
            sync_token,
        })
    }
}

/// The `rel="next"` target of an RFC 8288 Link header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_yield_the_next_target() {
        let header = r#"<https://api.example.com/items?page=3>; rel="next", <https://api.example.com/items?page=1>; rel="first""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.example.com/items?page=3")
        );
        assert_eq!(next_link(r#"<https://x/1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }
}
