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

    /// The input is well-formed but breaks a business rule (a required
    /// field, a type, a format): 422.
    #[error("{0}")]
    Unprocessable(String),

    /// Missing or bad credentials or signature; the reason is safe to show.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge { limit: usize },

    /// The client did not send its whole request in time (a body trickled
    /// in a byte at a time).
    #[error("the request body did not arrive within {} s", after.as_secs())]
    RequestTimeout { after: Duration },

    /// The route exists; `allow` lists the methods it takes (the `Allow`
    /// header RFC 9110 requires with a 405).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },

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

    /// The message with every cause, for logs and dead letters (operators
    /// read these; clients never do).
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    /// Whether the same request may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Internal { .. } => true,
            Self::Upstream { retryable, .. }
            | Self::Store { retryable, .. }
            | Self::Queue { retryable, .. } => *retryable,
            // The caller's faults and configuration errors stay as they are.
            _ => false,
        }
    }

    /// Whether the caller sent something wrong (a 4xx), as opposed to a
    /// failure on our side or upstream.
    pub fn is_caller_fault(&self) -> bool {
        matches!(
            self,
            Self::Validation { .. }
                | Self::Unprocessable(_)
                | Self::Unauthorized(_)
                | Self::PayloadTooLarge { .. }
                | Self::MethodNotAllowed { .. }
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
            Error::Unprocessable("email is required".into()),
            Error::Unauthorized("bad signature".into()),
            Error::PayloadTooLarge { limit: 10 },
            Error::MethodNotAllowed { allow: "POST" },
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
