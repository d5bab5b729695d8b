//! HTTP glue shared by the API Gateway functions: the one place that turns
//! a domain error into a status code and a JSON error body.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::json;

use crate::error::Error;
use crate::webhooks::Headers;

/// Status, machine-readable code and client-safe message of an error.
/// Internal failures never show their text; they are logged instead.
pub fn classify(error: &Error) -> (StatusCode, &'static str, String) {
    let shown = || error.to_string();
    match error {
        Error::Validation { .. } => (StatusCode::BAD_REQUEST, "invalid_request", shown()),
        Error::Unprocessable(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            shown(),
        ),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", shown()),
        Error::Forbidden => (StatusCode::FORBIDDEN, "forbidden", shown()),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", shown()),
        Error::Conflict(_) => (StatusCode::CONFLICT, "conflict", shown()),
        Error::PayloadTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", shown())
        }
        Error::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout", shown()),
        Error::MethodNotAllowed { .. } => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            shown(),
        ),
        Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", shown()),
        Error::Upstream { .. } => (
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            "an upstream service failed".into(),
        ),
        Error::Store { .. } | Error::Queue { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "temporarily unavailable, try again".into(),
        ),
        Error::Config(_) | Error::Internal { .. } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error".into(),
        ),
    }
}

pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"error": {"code", "message"}}` with the error's status.
pub fn error_response(error: &Error) -> Response<Body> {
    let (status, code, message) = classify(error);
    if status.is_server_error() {
        tracing::error!(error = %error.chain(), "request failed");
    } else {
        tracing::info!(status = status.as_u16(), %code, %message, "request rejected");
    }
    let mut response = json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    );
    if let Error::MethodNotAllowed { allow } = error {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    response
}

/// The `Allow` header's text for a route taking one method.
pub fn allow(method: &lambda_http::http::Method) -> &'static str {
    use lambda_http::http::Method;
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "POST",
    }
}

/// A JSON body that must be an object (serde would also read a struct from
/// an array); `empty` is what an empty body means, if it may be empty.
pub fn json_object<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    empty: Option<T>,
) -> crate::error::Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace)
        && let Some(empty) = empty
    {
        return Ok(empty);
    }
    // Told from the first byte, so a push's body is parsed once.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::validation("body", "must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::validation("body", e.to_string()))
}

/// The request's headers by lower-case name (values that are not text are
/// left out).
pub fn headers(request: &Request) -> Headers {
    Headers::new(
        request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    )
}

/// A path parameter: from API Gateway's route match, or else the path
/// segment after `prefix` (local routers that do not fill parameters in).
pub fn path_parameter(request: &Request, name: &str, prefix: &str) -> Option<String> {
    if let Some(value) = request
        .path_parameters_ref()
        .and_then(|params| params.first(name))
    {
        return Some(value.to_owned());
    }
    let path = request.raw_http_path();
    let path = if path.is_empty() {
        request.uri().path()
    } else {
        path
    };
    path.strip_prefix(prefix)
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .map(str::to_owned)
}

/// A query parameter: from API Gateway's parsed parameters, or else from the
/// request URI (requests built by local routers and tests).
pub fn query_parameter(request: &Request, name: &str) -> Option<String> {
    if let Some(value) = request
        .query_string_parameters_ref()
        .and_then(|params| params.first(name))
    {
        return Some(value.to_owned());
    }
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

pub(crate) fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) => {
                hex(high).zip(hex(low)).map(|(h, l)| (h * 16 + l) as u8)
            }
            _ => None,
        };
        match (decoded, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The claims an API Gateway JWT authorizer verified, if any.
pub fn authorizer_claims(request: &Request) -> Option<&std::collections::HashMap<String, String>> {
    match request.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(
            lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext {
                authorizer: Some(authorizer),
                ..
            },
        ) => authorizer.jwt.as_ref().map(|jwt| &jwt.claims),
        _ => None,
    }
}
