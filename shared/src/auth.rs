//! Who is calling: a bearer JWT verified here (HS256 with a shared secret
//! for local runs; RS256/ES256 with a public key or a JWKS document in
//! production), or the claims an API Gateway JWT authorizer already
//! verified. The tenant comes from a configured claim; every key the caller
//! touches is scoped to it.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::TenantId;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    /// Whether the token carried a `scope` or `scp` claim: the sync API
    /// then grants only what its `sync:` scopes say (`sync::Access`).
    pub scope_claim: bool,
    /// When the token expires (`exp`), when it says.
    pub expires_at: Option<crate::model::Timestamp>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// How tokens are checked, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub hs256_secret: Option<String>,
    /// (algorithm, PEM public key): RS256 or ES256.
    pub public_key: Option<(String, String)>,
    /// A JWKS document (JSON).
    pub jwks: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// The claim that names the tenant.
    pub tenant_claim: String,
    /// Accept the claims of an API Gateway JWT authorizer when present.
    pub trust_authorizer: bool,
}

enum Keys {
    Single(Algorithm, DecodingKey),
    Set(JwkSet),
}

pub struct Authenticator {
    keys: Option<Keys>,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_claim: String,
    trust_authorizer: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("tenant_claim", &self.tenant_claim)
            .field("trust_authorizer", &self.trust_authorizer)
            .finish_non_exhaustive()
    }
}

fn unauthorized(reason: &str) -> Error {
    Error::Unauthorized(reason.to_owned())
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Result<Self> {
        let keys = match (&config.hs256_secret, &config.public_key, &config.jwks) {
            (Some(secret), None, None) => Some(Keys::Single(
                Algorithm::HS256,
                DecodingKey::from_secret(secret.as_bytes()),
            )),
            (None, Some((algorithm, pem)), None) => {
                let (algorithm, key) = match algorithm.as_str() {
                    "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(pem.as_bytes())),
                    "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(pem.as_bytes())),
                    other => {
                        return Err(Error::Config(format!(
                            "JWT algorithm {other} is not supported (RS256 or ES256)"
                        )));
                    }
                };
                Some(Keys::Single(
                    algorithm,
                    key.map_err(|e| Error::Config(format!("JWT public key: {e}")))?,
                ))
            }
            (None, None, Some(jwks)) => Some(Keys::Set(
                serde_json::from_str(jwks).map_err(|e| Error::Config(format!("JWKS: {e}")))?,
            )),
            (None, None, None) if config.trust_authorizer => None,
            (None, None, None) => {
                return Err(Error::Config(
                    "no way to check tokens: set SYNCLINE_JWT_HS256_SECRET, \
                     SYNCLINE_JWT_PUBLIC_KEY or SYNCLINE_JWT_JWKS, or trust the authorizer"
                        .into(),
                ));
            }
            _ => {
                return Err(Error::Config(
                    "configure exactly one of the JWT secret, public key or JWKS".into(),
                ));
            }
        };
        Ok(Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            tenant_claim: config.tenant_claim.clone(),
            trust_authorizer: config.trust_authorizer,
        })
    }

    /// The caller of a request: from the authorizer's claims when trusted and
    /// present, else from the `Authorization: Bearer` header.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        authorizer_claims: Option<&HashMap<String, String>>,
    ) -> Result<Principal> {
        if self.trust_authorizer
            && let Some(claims) = authorizer_claims.filter(|c| !c.is_empty())
        {
            let claims: serde_json::Map<String, Value> = claims
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            return self.principal(&claims);
        }
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("a bearer token is required"))?;
        let claims = self.verify(token)?;
        self.principal(&claims)
    }

    fn verify(&self, token: &str) -> Result<serde_json::Map<String, Value>> {
        let header = decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        let (algorithm, key) = match &self.keys {
            Some(Keys::Single(algorithm, key)) => (*algorithm, key.clone()),
            Some(Keys::Set(set)) => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| unauthorized("token has no key id"))?;
                let jwk = set
                    .find(kid)
                    .ok_or_else(|| unauthorized("unknown key id"))?;
                let key = DecodingKey::from_jwk(jwk).map_err(|_| unauthorized("unusable key"))?;
                (header.alg, key)
            }
            None => return Err(unauthorized("bearer tokens are not accepted here")),
        };
        if header.alg != algorithm
            || !matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256
            )
        {
            return Err(unauthorized("unexpected token algorithm"));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = 30;
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| unauthorized(&format!("invalid token: {e}")))?;
        Ok(data.claims)
    }

    fn principal(&self, claims: &serde_json::Map<String, Value>) -> Result<Principal> {
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .ok_or_else(|| unauthorized(&format!("token has no {} claim", self.tenant_claim)))?;
        let tenant =
            TenantId::parse(tenant).map_err(|_| unauthorized("token names an invalid tenant"))?;
        let mut scopes = Vec::new();
        for name in ["scope", "scp", "roles", "cognito:groups"] {
            match claims.get(name) {
                Some(Value::String(text)) => scopes.extend(
                    text.trim_matches(|c| c == '[' || c == ']')
                        .split([' ', ','])
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                Some(Value::Array(items)) => {
                    scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                _ => {}
            }
        }
        Ok(Principal {
            tenant,
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            scopes,
            scope_claim: claims.contains_key("scope") || claims.contains_key("scp"),
            expires_at: claims
                .get("exp")
                .and_then(|exp| exp.as_i64().or_else(|| exp.as_str()?.parse().ok()))
                .map(|secs| crate::model::Timestamp::from_millis(secs.saturating_mul(1000))),
        })
    }
}
