//! A real WebSocket client for the local run's real-time channel.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// One open socket.
pub struct LiveClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server answered with.
    pub protocol: Option<String>,
}

/// A refused handshake: its HTTP status and JSON body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

fn ws_url(http_url: &str, query: &str) -> String {
    format!(
        "{}/v1/sync/live{query}",
        http_url.replacen("http://", "ws://", 1)
    )
}

async fn open(url: String, protocols: Option<&str>) -> Result<LiveClient, Refused> {
    let mut request = url.into_client_request().expect("a websocket request");
    if let Some(protocols) = protocols {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.parse().expect("a header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, response)) => Ok(LiveClient {
            stream,
            protocol: response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }),
        Err(WsError::Http(response)) => Err(Refused {
            status: response.status().as_u16(),
            body: response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null),
        }),
        Err(other) => panic!("the websocket handshake failed: {other}"),
    }
}

/// Connects with the token in the `token` query parameter.
pub async fn connect(http_url: &str, token: &str) -> Result<LiveClient, Refused> {
    open(ws_url(http_url, &format!("?token={token}")), None).await
}

/// Connects the way a browser does: `Sec-WebSocket-Protocol: syncline, bearer.<token>`.
pub async fn connect_as_browser(http_url: &str, token: &str) -> Result<LiveClient, Refused> {
    open(
        ws_url(http_url, ""),
        Some(&format!("syncline, bearer.{token}")),
    )
    .await
}

/// Connects with no token at all.
pub async fn connect_without_token(http_url: &str) -> Result<LiveClient, Refused> {
    open(ws_url(http_url, ""), None).await
}

impl LiveClient {
    /// The next poke within `within`, parsed; `None` if none came.
    pub async fn next_poke(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match message.expect("a websocket message") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("a JSON poke"));
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Whether the server closed the socket within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Closes cleanly (a close frame).
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }

    /// Drops the TCP connection without a close frame, as a client that
    /// lost its network does.
    pub fn abandon(self) {
        drop(self.stream);
    }

    /// Sends a text message (the server ignores them).
    pub async fn say(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("sent");
    }
}
