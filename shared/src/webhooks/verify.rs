//! Webhook signature verification over the raw body bytes: Stripe,
//! Calendly, Standard Webhooks and a configurable HMAC header. Signatures
//! are compared in constant time after a length check; timestamps are
//! checked in both directions; several secrets may be live at once
//! (rotation).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Headers;
use crate::error::{Error, Result};
use crate::model::Timestamp;

type HmacSha256 = Hmac<Sha256>;
const SIGNATURE_LEN: usize = 32;
/// Longest signature header we look at; anything longer is garbage.
const MAX_HEADER_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// How a provider signs its deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifierSpec {
    /// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`, HMAC-SHA256 of
    /// `{t}.{body}`.
    Stripe,
    /// `Calendly-Webhook-Signature: t=<unix>,v1=<hex>`, the same construction.
    Calendly,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...`,
    /// HMAC-SHA256 of `{id}.{timestamp}.{body}` with a `whsec_` base64 secret.
    StandardWebhooks,
    /// HMAC-SHA256 of the body in `header`, hex or base64, after an optional
    /// prefix such as `sha256=`. No timestamp: replays are caught by dedupe.
    Generic {
        header: String,
        encoding: Encoding,
        #[serde(default)]
        prefix: Option<String>,
    },
}

/// What a verified delivery told us besides "authentic".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verified {
    /// The Standard Webhooks message id, when the scheme has one.
    pub message_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Verifier {
    spec: VerifierSpec,
    keys: Vec<Vec<u8>>,
    tolerance: Duration,
}

fn reject(reason: &str) -> Error {
    Error::Unauthorized(reason.to_owned())
}

impl Verifier {
    /// `secrets` as configured; Standard Webhooks secrets are `whsec_`
    /// followed by base64, the others are used as they are.
    pub fn new(spec: VerifierSpec, secrets: &[String], tolerance: Duration) -> Result<Self> {
        if secrets.is_empty() {
            return Err(Error::Config(
                "a webhook source needs at least one secret".into(),
            ));
        }
        let keys = secrets
            .iter()
            .map(|secret| match spec {
                VerifierSpec::StandardWebhooks => {
                    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
                    BASE64.decode(encoded).map_err(|_| {
                        Error::Config("a Standard Webhooks secret must be whsec_ + base64".into())
                    })
                }
                _ if secret.is_empty() => Err(Error::Config("an empty webhook secret".into())),
                _ => Ok(secret.as_bytes().to_vec()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            spec,
            keys,
            tolerance,
        })
    }

    pub fn spec(&self) -> &VerifierSpec {
        &self.spec
    }

    /// Checks the delivery's signature at time `now`.
    pub fn verify(&self, headers: &Headers, body: &[u8], now: Timestamp) -> Result<Verified> {
        match &self.spec {
            VerifierSpec::Stripe => self.verify_timestamped(headers, "stripe-signature", body, now),
            VerifierSpec::Calendly => {
                self.verify_timestamped(headers, "calendly-webhook-signature", body, now)
            }
            VerifierSpec::StandardWebhooks => self.verify_standard(headers, body, now),
            VerifierSpec::Generic {
                header,
                encoding,
                prefix,
            } => self.verify_generic(headers, header, *encoding, prefix.as_deref(), body),
        }
    }

    fn check_timestamp(&self, raw: &str, now: Timestamp) -> Result<()> {
        let at: i64 = raw
            .trim()
            .parse()
            .map_err(|_| reject("malformed signature timestamp"))?;
        let skew = now.as_secs().abs_diff(at);
        if skew > self.tolerance.as_secs() {
            return Err(reject("signature timestamp outside the tolerance"));
        }
        Ok(())
    }

    /// Whether any key signs `parts` (concatenated) to `signature`.
    fn matches(&self, parts: &[&[u8]], signature: &[u8]) -> bool {
        if signature.len() != SIGNATURE_LEN {
            return false;
        }
        self.keys.iter().any(|key| {
            let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
                return false;
            };
            for part in parts {
                mac.update(part);
            }
            let expected = mac.finalize().into_bytes();
            bool::from(expected.as_slice().ct_eq(signature))
        })
    }

    fn verify_timestamped(
        &self,
        headers: &Headers,
        name: &str,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Verified> {
        let header = headers
            .get(name)
            .ok_or_else(|| reject(&format!("missing {name} header")))?;
        if header.len() > MAX_HEADER_LEN {
            return Err(reject("malformed signature header"));
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for pair in header.split(',') {
            let (key, value) = pair
                .trim()
                .split_once('=')
                .ok_or_else(|| reject("malformed signature header"))?;
            match key {
                "t" if timestamp.is_none() => timestamp = Some(value),
                "t" => return Err(reject("malformed signature header")),
                "v1" => signatures.push(value),
                // v0 and future schemes are not accepted.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or_else(|| reject("signature header has no timestamp"))?;
        if signatures.is_empty() {
            return Err(reject("signature header has no v1 signature"));
        }
        self.check_timestamp(timestamp, now)?;
        let parts: [&[u8]; 3] = [timestamp.as_bytes(), b".", body];
        let valid = signatures.iter().any(|candidate| {
            hex::decode(candidate).is_ok_and(|signature| self.matches(&parts, &signature))
        });
        if valid {
            Ok(Verified::default())
        } else {
            Err(reject("no signature matches"))
        }
    }

    fn verify_standard(&self, headers: &Headers, body: &[u8], now: Timestamp) -> Result<Verified> {
        let id = headers
            .get("webhook-id")
            .ok_or_else(|| reject("missing webhook-id header"))?;
        let timestamp = headers
            .get("webhook-timestamp")
            .ok_or_else(|| reject("missing webhook-timestamp header"))?;
        let header = headers
            .get("webhook-signature")
            .ok_or_else(|| reject("missing webhook-signature header"))?;
        if header.len() > MAX_HEADER_LEN || id.len() > 256 {
            return Err(reject("malformed signature header"));
        }
        self.check_timestamp(timestamp, now)?;
        let parts: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.trim().as_bytes(), b".", body];
        let valid = header.split_whitespace().any(|entry| {
            entry
                .strip_prefix("v1,")
                .and_then(|encoded| BASE64.decode(encoded).ok())
                .is_some_and(|signature| self.matches(&parts, &signature))
        });
        if valid {
            Ok(Verified {
                message_id: Some(id.to_owned()),
            })
        } else {
            Err(reject("no signature matches"))
        }
    }

    fn verify_generic(
        &self,
        headers: &Headers,
        name: &str,
        encoding: Encoding,
        prefix: Option<&str>,
        body: &[u8],
    ) -> Result<Verified> {
        let header = headers
            .get(name)
            .ok_or_else(|| reject(&format!("missing {name} header")))?;
        if header.len() > MAX_HEADER_LEN {
            return Err(reject("malformed signature header"));
        }
        let encoded = match prefix {
            Some(prefix) => header
                .trim()
                .strip_prefix(prefix)
                .ok_or_else(|| reject("malformed signature header"))?,
            None => header.trim(),
        };
        let signature = match encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            Encoding::Base64 => BASE64.decode(encoded).ok(),
        }
        .ok_or_else(|| reject("malformed signature header"))?;
        if self.matches(&[body], &signature) {
            Ok(Verified::default())
        } else {
            Err(reject("no signature matches"))
        }
    }
}
