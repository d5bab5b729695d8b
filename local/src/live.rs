//! The real-time channel on a laptop: the WebSocket endpoint
//! (`GET /v1/sync/live`, upgraded) with the handshake the deployed
//! `$connect` runs, the sockets held in-process as the channel adapter
//! (what API Gateway's management API is deployed), and the poke fan-out
//! fed by the store's commit signal (what DynamoDB Streams are deployed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use syncline::error::Result;
use syncline::lambda::http::error_response;
use syncline::model::{TenantId, Timestamp};
use syncline::realtime::{Channel, Poker, Realtime, Sent, Touched};
use syncline::store::{Connection, Store};

use crate::run::Functions;

/// The local WebSocket path (deployed, the WebSocket API's stage URL).
pub const PATH: &str = "/v1/sync/live";

/// Bytes a socket's read buffer holds.
const SOCKET_BUFFER: usize = 4 * 1024;
/// The largest message a client may send (it is ignored anyway); larger
/// ones close the socket.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

enum Outgoing {
    Text(String),
    Close,
}

struct Socket {
    /// Known once the handshake's token is checked.
    tenant: Option<TenantId>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

/// The open sockets of this process, by connection id: the local
/// [`Channel`].
#[derive(Default)]
pub struct LocalChannel {
    sockets: Mutex<HashMap<String, Socket>>,
}

impl LocalChannel {
    fn sockets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Socket>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many sockets are open.
    pub fn open(&self) -> usize {
        self.sockets().len()
    }

    /// The ids of the open sockets.
    pub fn ids(&self) -> Vec<String> {
        self.sockets().keys().cloned().collect()
    }

    fn tenants(&self) -> Vec<TenantId> {
        let mut tenants: Vec<TenantId> = self
            .sockets()
            .values()
            .filter_map(|s| s.tenant.clone())
            .collect();
        tenants.sort();
        tenants.dedup();
        tenants
    }

    /// The tenants a poke can reach: those of the open sockets, or `None`
    /// (any tenant) while a socket's handshake is being checked.
    fn reachable(&self) -> Option<Vec<TenantId>> {
        let sockets = self.sockets();
        let mut tenants = Vec::with_capacity(sockets.len());
        for socket in sockets.values() {
            tenants.push(socket.tenant.clone()?);
        }
        Some(tenants)
    }
}

#[async_trait]
impl Channel for LocalChannel {
    async fn send(&self, connection: &str, message: &str) -> Result<Sent> {
        let sockets = self.sockets();
        match sockets.get(connection) {
            Some(socket)
                if socket
                    .outgoing
                    .send(Outgoing::Text(message.to_owned()))
                    .is_ok() =>
            {
                Ok(Sent::Delivered)
            }
            _ => Ok(Sent::Gone),
        }
    }

    async fn close(&self, connection: &str) -> Result<()> {
        if let Some(socket) = self.sockets().get(connection) {
            let _closed_already = socket.outgoing.send(Outgoing::Close);
        }
        Ok(())
    }
}

/// The real-time parts of the local run.
pub struct Live {
    pub realtime: Realtime,
    pub channel: Arc<LocalChannel>,
    pub poker: Poker,
}

impl Live {
    pub fn new(realtime: Realtime) -> Self {
        let channel = Arc::new(LocalChannel::default());
        let poker = Poker::new(realtime.store().clone(), channel.clone());
        Self {
            realtime,
            channel,
            poker,
        }
    }
}

/// `GET /v1/sync/live`: the handshake, then the socket.
///
/// The socket's outgoing queue is registered before the connection is
/// stored, so a poke fanned out while the upgrade completes waits in the
/// queue instead of finding the connection gone.
pub async fn upgrade(
    State(functions): State<Arc<Functions>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    let handshake = syncline::realtime::Handshake {
        query_token: query.get("token").map(String::as_str),
        protocols: headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let (outgoing, messages) = mpsc::unbounded_channel();
    let live = &functions.live;
    live.channel.sockets().insert(
        id.clone(),
        Socket {
            tenant: None,
            outgoing,
        },
    );
    match live.realtime.connect(&id, &handshake).await {
        Err(error) => {
            live.channel.sockets().remove(&id);
            let (parts, body) = error_response(&error).into_parts();
            axum::response::Response::from_parts(
                parts,
                axum::body::Body::from(body.as_ref().to_vec()),
            )
        }
        Ok(accepted) => {
            if let Some(socket) = live.channel.sockets().get_mut(&id) {
                socket.tenant = Some(accepted.connection.tenant.clone());
            }
            // Pokes are a few dozen bytes and clients have nothing to say:
            // small buffers (tungstenite eagerly allocates 128 KiB to read)
            // let one process hold many sockets.
            let upgrade = upgrade
                .read_buffer_size(SOCKET_BUFFER)
                .write_buffer_size(0)
                .max_message_size(MAX_CLIENT_MESSAGE)
                .max_frame_size(MAX_CLIENT_MESSAGE);
            let upgrade = match accepted.protocol {
                Some(protocol) => upgrade.protocols([protocol]),
                None => upgrade,
            };
            let (held, failed) = (functions.clone(), functions.clone());
            let connection = accepted.connection;
            let unheld = connection.clone();
            upgrade
                .on_failed_upgrade(move |_| {
                    tokio::spawn(async move { forget(&failed, &unheld).await });
                })
                .on_upgrade(move |socket| hold(held, connection, messages, socket))
                .into_response()
        }
    }
}

/// Holds one socket until the client leaves or its connection ends, then
/// forgets it.
async fn hold(
    functions: Arc<Functions>,
    connection: Connection,
    mut messages: mpsc::UnboundedReceiver<Outgoing>,
    mut socket: WebSocket,
) {
    let ends_in = u64::try_from(connection.expires_at.as_millis() - Timestamp::now().as_millis())
        .unwrap_or(0);
    let end = tokio::time::sleep(std::time::Duration::from_millis(ends_in));
    tokio::pin!(end);
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Some(Outgoing::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close) | None => break,
            },
            incoming = socket.recv() => match incoming {
                // What a client sends is ignored, as deployed ($default).
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            () = &mut end => break,
        }
    }
    let _gone_already = socket.send(Message::Close(None)).await;
    forget(&functions, &connection).await;
}

async fn forget(functions: &Functions, connection: &Connection) {
    let live = &functions.live;
    live.channel.sockets().remove(&connection.id);
    if let Err(err) = live
        .realtime
        .store()
        .delete_connection(&connection.tenant, &connection.id)
        .await
    {
        // Its TTL ends it; the next poke finds it gone and forgets it.
        tracing::warn!(error = %err.chain(), "forgetting a closed connection failed");
    }
}

/// Pokes every commit of the process, batched: what DynamoDB Streams and
/// the delivery function do deployed. Falling behind the signal pokes
/// every tenant with an open socket; a commit of a tenant with no open
/// socket pokes nothing.
pub fn spawn_pokes(functions: Arc<Functions>, store: &Store) -> tokio::task::JoinHandle<()> {
    let mut commits = store.commits().subscribe();
    tokio::spawn(async move {
        let live = &functions.live;
        loop {
            let mut batch = Vec::new();
            let mut lagged = false;
            match commits.recv().await {
                Ok(commit) => batch.push(commit),
                Err(RecvError::Lagged(_)) => lagged = true,
                Err(RecvError::Closed) => return,
            }
            loop {
                match commits.try_recv() {
                    Ok(commit) => batch.push(commit),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            let mut touched = Touched::from_commits(&batch);
            if lagged {
                touched = everything(live.channel.tenants(), &functions);
            }
            // Only this process holds local sockets: a tenant without one
            // has no connection to list (a sync's commits would otherwise
            // list them hundreds of times a second).
            if let Some(open) = live.channel.reachable() {
                touched.retain(|t| open.contains(&t.tenant));
            }
            if touched.is_empty() {
                continue;
            }
            if let Err(err) = live.poker.poke(&touched).await {
                tracing::warn!(error = %err.chain(), "local pokes failed");
            }
        }
    })
}

/// Every registered entity type of each tenant, at the counter's value.
fn everything(tenants: Vec<TenantId>, functions: &Functions) -> Vec<Touched> {
    let entities: std::collections::BTreeSet<_> = functions.entity_types().into_iter().collect();
    tenants
        .into_iter()
        .map(|tenant| Touched {
            tenant,
            entities: entities.clone(),
            seq: None,
        })
        .collect()
}
