//! Declarative HTTP JSON sources: the spec and its presets, fetching pages,
//! and turning items into record changes (docs/SOURCES.md).

mod http;
mod spec;
mod transform;

pub use http::{Bounds, Fetched, HttpSource, Page, PageState, next_link};
pub use spec::{AuthSpec, Incremental, MappingSpec, NoOverlap, Pagination, SourceSpec, TimeFormat};
pub use transform::{Item, OverlapIndex, transform};

/// The HTTP client every source shares (rustls, connection pooling).
pub fn http_client() -> crate::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("syncline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::Error::Config(format!("HTTP client: {e}")))
}
