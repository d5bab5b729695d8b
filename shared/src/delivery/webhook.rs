//! Outbound webhooks, signed per the Standard Webhooks spec: `webhook-id`
//! (stable per destination, record and version, so receivers dedupe a
//! redelivery), `webhook-timestamp` and `webhook-signature`
//! (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the
//! `whsec_` secret). Any answer but 2xx is a failed attempt.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::target::{Applied, Outbound, Target};
use crate::connectors::{RateLimiter, Reading, SourceClient, send_with_retry, upstream};
use crate::error::{Error, Result};
use crate::model::Timestamp;

/// Quick attempts inside one delivery before the retry queue takes over.
const ATTEMPTS: u32 = 2;

pub struct WebhookTarget {
    url: String,
    key: Vec<u8>,
    client: SourceClient,
    limiter: RateLimiter,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The signature header of `body` sent as message `id` at `timestamp`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .map_err(|e| Error::Config(format!("webhook secret: {e}")))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

impl WebhookTarget {
    pub fn new(
        url: &str,
        secret: &str,
        requests_per_second: f64,
        timeout_secs: u64,
        client: SourceClient,
    ) -> Result<Self> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let key = BASE64
            .decode(encoded)
            .map_err(|_| Error::Config("a webhook secret must be whsec_ + base64".into()))?;
        Ok(Self {
            url: url.to_owned(),
            key,
            client,
            limiter: RateLimiter::new(requests_per_second),
            timeout: std::time::Duration::from_secs(timeout_secs),
        })
    }
}

#[async_trait]
impl Target for WebhookTarget {
    async fn apply(&self, outbound: &Outbound<'_>) -> Result<Applied> {
        let record = outbound.record;
        let kind = if record.entity.as_str() == super::EVENT_ENTITY {
            record.data["type"].as_str().unwrap_or("event")
        } else if record.deleted {
            "record.deleted"
        } else if record.version.get() == 1 {
            "record.created"
        } else {
            "record.updated"
        };
        let body = serde_json::to_vec(&json!({
            "type": kind,
            "timestamp": record.updated_at.to_rfc3339(),
            "data": {
                "entity": record.entity,
                "id": record.id,
                "version": record.version.get(),
                "deleted": record.deleted,
                "data": outbound.data,
            },
        }))
        .map_err(|e| Error::internal(format!("webhook body: {e}")))?;
        let build = || {
            let now = Timestamp::now().as_secs();
            Ok(self
                .client
                .get()?
                .post(&self.url)
                .timeout(self.timeout)
                .header("content-type", "application/json")
                .header("webhook-id", outbound.key)
                .header("webhook-timestamp", now.to_string())
                .header(
                    "webhook-signature",
                    sign(&self.key, outbound.key, now, &body)?,
                )
                .body(body.clone()))
        };
        send_with_retry(
            "webhook",
            ATTEMPTS,
            &self.limiter,
            build,
            |response| async move {
                let status = response.status();
                if status.is_success() {
                    Ok(Reading::Done(Applied::default()))
                } else {
                    // Endpoints answer 4xx while misconfigured or down for
                    // maintenance too: every failure is retried on the schedule.
                    Err(upstream("webhook", format!("HTTP {status}"), true))
                }
            },
        )
        .await
    }
}
