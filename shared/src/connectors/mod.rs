//! Declarative HTTP JSON sources: the spec and its presets, the one HTTP
//! call path (rate limit, retries), pagination, fetching pages, and turning
//! items into record changes (docs/SOURCES.md).

mod client;
mod http;
mod pagination;
mod spec;
pub mod times;
mod transform;

pub use client::{
    RateLimiter, Reading, SOURCE_ATTEMPTS, SourceClient, http_client, send_with_retry, upstream,
};
pub use http::{HttpSource, auth_header};
pub use pagination::{Bounds, Fetched, Page, PageState, next_link};
pub use spec::{AuthSpec, Incremental, MappingSpec, NoOverlap, Pagination, SourceSpec, TimeFormat};
pub use transform::{Item, OverlapIndex, mark_text, transform};
