//! Declarative HTTP JSON sources: the spec and its presets, fetching pages,
//! and turning items into record changes (docs/SOURCES.md).

mod http;
mod spec;
mod transform;

pub use http::{Bounds, Fetched, HttpSource, Page, PageState, next_link};
pub use spec::{AuthSpec, Incremental, MappingSpec, NoOverlap, Pagination, SourceSpec, TimeFormat};
pub use transform::{Item, OverlapIndex, mark_text, transform};

/// The HTTP client every source shares (rustls, connection pooling).
pub fn http_client() -> crate::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("syncline/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| crate::Error::Config(format!("HTTP client: {e}")))
}

/// The sources' HTTP client, built when a source first makes a request:
/// its TLS setup (the system's CA bundle) is then paid by the invocations
/// that call a REST source, not by every cold start of a function that may
/// never call one (admin-api, retry-worker).
#[derive(Debug, Clone, Default)]
pub struct SourceClient(std::sync::Arc<std::sync::OnceLock<reqwest::Client>>);

impl SourceClient {
    /// A client built on first use.
    pub fn lazy() -> Self {
        Self::default()
    }

    pub fn get(&self) -> crate::Result<&reqwest::Client> {
        if let Some(client) = self.0.get() {
            return Ok(client);
        }
        let client = http_client()?;
        Ok(self.0.get_or_init(|| client))
    }
}

impl From<reqwest::Client> for SourceClient {
    fn from(client: reqwest::Client) -> Self {
        Self(std::sync::Arc::new(std::sync::OnceLock::from(client)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_source_client_is_built_once_on_first_use_and_shared_by_clones() {
        let lazy = SourceClient::lazy();
        let clone = lazy.clone();
        assert!(lazy.0.get().is_none(), "nothing built before first use");
        let first: *const reqwest::Client = lazy.get().expect("client");
        let second: *const reqwest::Client = clone.get().expect("client");
        assert_eq!(first, second, "clones share the one client");
    }
}
