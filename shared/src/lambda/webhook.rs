//! `POST /v1/webhooks/{source}` (API Gateway HTTP API).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use super::http::{error_response, headers, json_response, path_parameter};
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::webhooks::{Receipt, WebhookService};

pub async fn handle_webhook(
    service: &WebhookService,
    request: Request,
) -> std::result::Result<Response<Body>, lambda_http::Error> {
    let source = path_parameter(&request, "source", "/v1/webhooks/").unwrap_or_default();
    let result = receive(service, &request).await;
    let metric = match &result {
        Ok(Receipt::Applied { .. }) => "WebhookApplied",
        Ok(Receipt::Duplicate { .. }) => "WebhookDuplicate",
        Ok(Receipt::Ignored { .. }) => "WebhookIgnored",
        Ok(Receipt::Queued { .. }) => "WebhookQueued",
        Err(error) if error.is_caller_fault() => "WebhookRejected",
        Err(_) => "WebhookFailed",
    };
    crate::metrics::emit(
        &[("function", "webhook"), ("source", source.as_str())],
        &[(metric, 1.0, crate::metrics::Unit::Count)],
    );
    Ok(match result {
        Ok(receipt) => receipt_response(&receipt),
        Err(error) => error_response(&error),
    })
}

async fn receive(service: &WebhookService, request: &Request) -> Result<Receipt> {
    if request.method() != Method::POST {
        return Err(Error::MethodNotAllowed { allow: "POST" });
    }
    let source = path_parameter(request, "source", "/v1/webhooks/")
        .ok_or_else(|| Error::NotFound("route".into()))?;
    service
        .receive(
            &source,
            &headers(request),
            request.body().as_ref(),
            Timestamp::now(),
        )
        .await
}

fn receipt_response(receipt: &Receipt) -> Response<Body> {
    match receipt {
        Receipt::Applied { event_id, records } => json_response(
            StatusCode::OK,
            &json!({"status": "applied", "event_id": event_id, "records": records}),
        ),
        Receipt::Duplicate { event_id } => json_response(
            StatusCode::OK,
            &json!({"status": "duplicate", "event_id": event_id}),
        ),
        Receipt::Ignored { event_type } => json_response(
            StatusCode::OK,
            &json!({"status": "ignored", "event_type": event_type}),
        ),
        Receipt::Queued { event_id } => json_response(
            StatusCode::ACCEPTED,
            &json!({"status": "queued", "event_id": event_id}),
        ),
    }
}
