//! The domain error. It knows which failures are the caller's fault (4xx),
//! which are worth retrying, and keeps the vendor error as its `source`.

use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is malformed or breaks a rule; retrying it cannot help.
    #[error("invalid {field}: {reason}")]
    Validation { field: String, reason: String },

    #[error("authentication required")]
    Unauthorized,

    #[error("not allowed")]
    Forbidden,

    #[error("{0} not found")]
    NotFound(String),

    /// A conditional write lost: the item changed since it was read, or
    /// already exists.
    #[error("conflict: {0}")]
    Conflict(String),

    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },

    #[error("upstream {service} failed: {reason}")]
    Upstream {
        service: String,
        reason: String,
        retryable: bool,
    },

    #[error("storage operation {operation} failed")]
    Store {
        operation: &'static str,
        retryable: bool,
        #[source]
        source: BoxError,
    },

    #[error("queue operation {operation} failed")]
    Queue {
        operation: &'static str,
        retryable: bool,
        #[source]
        source: BoxError,
    },

    #[error("configuration: {0}")]
    Config(String),

    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// Whether the same request may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } => true,
            Self::Upstream { retryable, .. }
            | Self::Store { retryable, .. }
            | Self::Queue { retryable, .. } => *retryable,
            Self::Internal { .. } => true,
            Self::Validation { .. }
            | Self::Unauthorized
            | Self::Forbidden
            | Self::NotFound(_)
            | Self::Conflict(_)
            | Self::Config(_) => false,
        }
    }

    /// Whether the caller sent something wrong (a 4xx), as opposed to a
    /// failure on our side or upstream.
    pub fn is_caller_fault(&self) -> bool {
        matches!(
            self,
            Self::Validation { .. }
                | Self::Unauthorized
                | Self::Forbidden
                | Self::NotFound(_)
                | Self::Conflict(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_faults_are_never_retried() {
        let errors = [
            Error::validation("id", "empty"),
            Error::Unauthorized,
            Error::Forbidden,
            Error::NotFound("record".into()),
            Error::Conflict("version".into()),
        ];
        for error in errors {
            assert!(error.is_caller_fault(), "{error}");
            assert!(!error.is_retryable(), "{error}");
        }
    }

    #[test]
    fn throttled_storage_is_retryable_and_not_the_callers_fault() {
        let error = Error::Store {
            operation: "PutItem",
            retryable: true,
            source: "throttled".into(),
        };
        assert!(error.is_retryable());
        assert!(!error.is_caller_fault());
    }
}
