//! The port that reaches an open connection, and its AWS adapter: API
//! Gateway's management API (`POST /@connections/{id}`, `DELETE` to
//! close). The local run's adapter holds the sockets themselves
//! (`syncline-local`'s `live` module).

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;

use crate::error::{Error, Result};

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    /// The connection no longer exists: forget it.
    Gone,
}

#[async_trait]
pub trait Channel: Send + Sync {
    /// Sends one text message to a connection.
    async fn send(&self, connection: &str, message: &str) -> Result<Sent>;
    /// Closes a connection (its token expired).
    async fn close(&self, connection: &str) -> Result<()>;
}

/// API Gateway WebSocket connections, through the management API of one
/// stage (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`).
#[derive(Debug, Clone)]
pub struct ApiGatewayChannel {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayChannel {
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

fn upstream<E: std::error::Error + 'static>(operation: &str, err: &SdkError<E>) -> Error {
    let retryable = match err {
        SdkError::ServiceError(service) => service.raw().status().is_server_error(),
        _ => true,
    };
    Error::Upstream {
        service: format!("API Gateway {operation}"),
        reason: aws_sdk_apigatewaymanagement::error::DisplayErrorContext(err).to_string(),
        retryable,
    }
}

#[async_trait]
impl Channel for ApiGatewayChannel {
    async fn send(&self, connection: &str, message: &str) -> Result<Sent> {
        match self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(Blob::new(message.as_bytes()))
            .send()
            .await
        {
            Ok(_) => Ok(Sent::Delivered),
            Err(SdkError::ServiceError(service)) if service.err().is_gone_exception() => {
                Ok(Sent::Gone)
            }
            Err(err) => Err(upstream("PostToConnection", &err)),
        }
    }

    async fn close(&self, connection: &str) -> Result<()> {
        match self
            .client
            .delete_connection()
            .connection_id(connection)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(service)) if service.err().is_gone_exception() => Ok(()),
            Err(err) => Err(upstream("DeleteConnection", &err)),
        }
    }
}
