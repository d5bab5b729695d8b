//! realtime's events: API Gateway WebSocket routes. `$connect` checks the
//! token and stores the connection (a refusal ends the handshake with its
//! status), `$disconnect` forgets it, `$default` (anything a client
//! sends) is acknowledged and ignored: pokes go one way.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use lambda_http::http::{HeaderMap, HeaderValue};
use lambda_runtime::LambdaEvent;
use serde_json::json;

use super::http::classify;
use crate::error::Error;
use crate::realtime::{Handshake, Realtime};

fn response(status: u16, body: serde_json::Value) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    response.body = Some(Body::Text(body.to_string()));
    response
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn refused(error: &Error) -> ApiGatewayProxyResponse {
    let (status, code, message) = classify(error);
    if status.is_server_error() {
        tracing::error!(error = %error.chain(), "websocket route failed");
    }
    response(
        status.as_u16(),
        json!({"error": {"code": code, "message": message}}),
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn handle_socket(
    realtime: &Realtime,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> Result<ApiGatewayProxyResponse, lambda_runtime::Error> {
    let request = event.payload;
    let context = &request.request_context;
    let Some(connection) = context.connection_id.as_deref() else {
        return Ok(refused(&Error::validation(
            "connection",
            "the event names no connection",
        )));
    };
    Ok(match context.route_key.as_deref() {
        Some("$connect") => {
            let handshake = Handshake {
                query_token: request.query_string_parameters.first("token"),
                protocols: header(&request.headers, "sec-websocket-protocol"),
            };
            match realtime.connect(connection, &handshake).await {
                Ok(accepted) => {
                    let mut ok = response(200, json!({}));
                    if let Some(protocol) = accepted.protocol {
                        ok.headers
                            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
                    }
                    ok
                }
                Err(error) => refused(&error),
            }
        }
        Some("$disconnect") => match realtime.disconnect(connection).await {
            Ok(()) => response(200, json!({})),
            // Lambda retries nothing here; the connection's TTL ends it.
            Err(error) => refused(&error),
        },
        _ => response(200, json!({})),
    })
}
