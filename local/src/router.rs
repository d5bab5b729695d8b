//! The local run's one HTTP port: every function's routes, the Lambda
//! Invoke API, and the request limits API Gateway would apply (body size
//! and the time a body may take to arrive).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use syncline::error::{Error, Result};
use syncline::lambda::http::{error_response, json_response};

use crate::run::{Functions, timeout_of};

/// The largest request body the local router accepts (API Gateway's
/// limit for HTTP APIs is 10 MB).
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// How long a request body may take to arrive (API Gateway's own limit is
/// 30 s for the whole request): a client trickling one byte at a time holds
/// a connection this long, then gets 408.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

async fn route(
    State(functions): State<Arc<Functions>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let response = match tokio::time::timeout(BODY_TIMEOUT, read_body(body)).await {
        Err(_) => error_response(&Error::RequestTimeout {
            after: BODY_TIMEOUT,
        }),
        Ok(Err(error)) => error_response(&error),
        Ok(Ok(bytes)) => {
            let invoked = parts
                .uri
                .path()
                .strip_prefix("/2015-03-31/functions/")
                .and_then(|rest| rest.strip_suffix("/invocations"))
                .map(str::to_owned);
            match invoked {
                Some(function) => invoke_route(&functions, &function, &bytes).await,
                None => {
                    let request = Request::from_parts(parts, Body::from(bytes));
                    functions.http(request).await
                }
            }
        }
    };
    let (parts, body) = response.into_parts();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body.as_ref().to_vec()))
}

/// The request body, up to [`MAX_REQUEST_BYTES`] (as API Gateway takes).
/// A larger one is read on and dropped (up to four times the limit) before
/// the 413, so that the client, still sending, gets the answer instead of a
/// closed connection.
async fn read_body(body: axum::body::Body) -> Result<Vec<u8>> {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::validation("body", e.to_string()))?;
        total += chunk.len();
        if total <= MAX_REQUEST_BYTES {
            bytes.extend_from_slice(&chunk);
        } else if total > 4 * MAX_REQUEST_BYTES {
            break;
        }
    }
    if total > MAX_REQUEST_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    Ok(bytes)
}

async fn invoke_route(functions: &Functions, function: &str, payload: &[u8]) -> Response<Body> {
    let payload: Value = if payload.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(payload) {
            Ok(payload) => payload,
            Err(e) => return error_response(&Error::validation("event", e.to_string())),
        }
    };
    match functions
        .invoke(function, payload, timeout_of(function))
        .await
    {
        Ok(output) => json_response(StatusCode::OK, &output),
        Err(error) => error_response(&error),
    }
}

/// Serves every function on `listener` until the returned task is aborted.
pub fn serve(
    functions: Arc<Functions>,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route(crate::live::PATH, axum::routing::get(crate::live::upgrade))
        .fallback(route)
        .with_state(functions);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "local router stopped");
        }
    })
}
