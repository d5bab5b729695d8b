//! The WebSocket handshake: the same bearer JWT as the sync API, from the
//! `token` query parameter or, for browsers (which cannot set headers on a
//! WebSocket), the `Sec-WebSocket-Protocol` header offering `syncline` and
//! `bearer.<token>`. An accepted connection is stored under its tenant
//! with what its token may read and when it ends.

use std::time::Duration;

use crate::auth::Authenticator;
use crate::error::{Error, Result};
use crate::model::Timestamp;
use crate::store::{Connection, Store};
use crate::sync::Access;

/// The subprotocol a browser offers (with `bearer.<token>`) and the server
/// answers with.
pub const PROTOCOL: &str = "syncline";
/// The longest a connection lives: API Gateway closes WebSockets after two
/// hours, and a connection ends sooner when its token expires.
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 3600);

/// What a client's opening request carried.
#[derive(Debug, Clone, Copy, Default)]
pub struct Handshake<'a> {
    /// The `token` query parameter.
    pub query_token: Option<&'a str>,
    /// The `Sec-WebSocket-Protocol` header: comma-separated protocols.
    pub protocols: Option<&'a str>,
}

impl Handshake<'_> {
    /// The bearer token, and whether the client offered [`PROTOCOL`] (the
    /// answer must then name it, or a browser drops the connection).
    fn token(&self) -> Result<(&str, bool)> {
        let offered: Vec<&str> = self
            .protocols
            .map(|p| p.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let named = offered.contains(&PROTOCOL);
        let from_protocols = offered.iter().find_map(|p| p.strip_prefix("bearer."));
        match self
            .query_token
            .or(from_protocols)
            .filter(|t| !t.is_empty())
        {
            Some(token) => Ok((token, named)),
            None => Err(Error::Unauthorized(
                "a bearer token is required (the token query parameter, \
                 or Sec-WebSocket-Protocol: syncline, bearer.<token>)"
                    .into(),
            )),
        }
    }
}

/// The real-time channel's connect and disconnect.
#[derive(Debug)]
pub struct Realtime {
    store: Store,
    auth: Authenticator,
    ttl: Duration,
}

/// An accepted connection, and the subprotocol to answer with.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub connection: Connection,
    pub protocol: Option<&'static str>,
}

impl Realtime {
    pub fn new(store: Store, auth: Authenticator) -> Self {
        Self {
            store,
            auth,
            ttl: CONNECTION_TTL,
        }
    }

    /// Connections that end sooner than [`CONNECTION_TTL`].
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Checks the handshake's token and stores connection `id`. A missing,
    /// bad or expired token: [`Error::Unauthorized`], nothing stored.
    pub async fn connect(&self, id: &str, handshake: &Handshake<'_>) -> Result<Accepted> {
        let (token, named) = handshake.token()?;
        let principal = self
            .auth
            .authenticate(Some(&format!("Bearer {token}")), None)?;
        let now = Timestamp::now();
        let mut expires_at = now.plus(self.ttl);
        if let Some(exp) = principal.expires_at {
            expires_at = expires_at.min(exp);
        }
        let connection = Connection {
            id: id.to_owned(),
            tenant: principal.tenant.clone(),
            reads: Access::of(&principal).reads(),
            connected_at: now,
            expires_at,
        };
        self.store.put_connection(&connection).await?;
        Ok(Accepted {
            connection,
            protocol: named.then_some(PROTOCOL),
        })
    }

    /// Forgets connection `id` (the client or the gateway closed it).
    pub async fn disconnect(&self, id: &str) -> Result<()> {
        self.store.drop_connection(id).await.map(|_| ())
    }
}
