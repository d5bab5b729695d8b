//! What several benchmarks build the same way: a sync API with a token for
//! it, and Stripe-signed webhook requests.

use hmac::{Hmac, Mac};
use jsonwebtoken::{EncodingKey, Header, encode};
use lambda_http::Body;
use serde_json::json;
use sha2::Sha256;
use syncline::auth::{AuthConfig, Authenticator};
use syncline::lambda::sync_api::SyncApi;
use syncline::model::Timestamp;
use syncline::store::Store;
use syncline::sync::{EntityRegistry, SyncService};

/// The sync API over `store` with `registry`, checking HS256 tokens signed
/// with `secret`, and a token of tenant `bench` valid for an hour.
pub fn sync_api(store: &Store, registry: EntityRegistry, secret: &str) -> (SyncApi, String) {
    let api = SyncApi {
        service: SyncService::new(store.clone(), registry),
        auth: Authenticator::new(&AuthConfig {
            hs256_secret: Some(secret.into()),
            tenant_claim: "tenant".into(),
            ..AuthConfig::default()
        })
        .expect("auth"),
    };
    let token = encode(
        &Header::default(),
        &json!({"tenant": "bench", "exp": Timestamp::now().as_secs() + 3600}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("token");
    (api, token)
}

/// `POST /v1/webhooks/stripe` with `body`, signed now with `secret` the
/// way Stripe signs.
pub fn stripe_request(secret: &str, body: Vec<u8>) -> lambda_http::Request {
    let t = Timestamp::now().as_secs().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let header = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("/v1/webhooks/stripe")
        .header("stripe-signature", header)
        .body(Body::from(body))
        .expect("request")
}
