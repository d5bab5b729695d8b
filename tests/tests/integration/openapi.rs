//! docs/openapi.yaml names exactly the routes the template deploys, and the
//! code serves every one of them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use syncline_tests::service::{Service, ServiceConfig, repo_root};

/// Every documented operation: "METHOD /path" and its OpenAPI object.
fn operations() -> Vec<(String, serde_yaml::Value)> {
    let text = std::fs::read_to_string(format!("{}/docs/openapi.yaml", repo_root()))
        .expect("docs/openapi.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("OpenAPI is YAML");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        let path = path.as_str().expect("path");
        for (method, operation) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method");
            if ["get", "put", "post", "delete", "patch"].contains(&method) {
                found.push((
                    format!("{} {path}", method.to_uppercase()),
                    operation.clone(),
                ));
            }
        }
    }
    found
}

/// Documented routes with the statuses each may answer.
pub(crate) fn documented() -> BTreeMap<String, BTreeSet<u16>> {
    operations()
        .into_iter()
        .map(|(route, operation)| {
            let statuses = operation["responses"]
                .as_mapping()
                .expect("responses")
                .keys()
                .map(|k| k.as_str().expect("status").parse().expect("numeric status"))
                .collect();
            (route, statuses)
        })
        .collect()
}

/// Documented routes that take a request body.
pub(crate) fn with_body() -> BTreeSet<String> {
    operations()
        .into_iter()
        .filter(|(_, operation)| !operation["requestBody"].is_null())
        .map(|(route, _)| route)
        .collect()
}

/// A documented path with its parameters filled in (`source` as given).
pub(crate) fn concrete(path: &str, source: &str) -> String {
    path.replace("{source}", source)
        .replace("{destination}", "nope")
        .replace("{action}", "enable")
        .replace("{entity}", "task")
        .replace("{id}", "nope")
        .replace("{asset}", "console.js")
}

/// The code's answer is "no such route" (404 route, or 405).
fn unrouted(status: u16, body: &serde_json::Value) -> bool {
    status == 405 || (status == 404 && body["error"]["message"] == json!("route not found"))
}

#[tokio::test]
async fn the_code_serves_every_documented_route() {
    let service = Service::with_demo(5).await;
    let token = Service::admin_token("demo");
    for (route, statuses) in documented() {
        let (method, path) = route.split_once(' ').expect("method and path");
        let path = concrete(path, "demo-properties");
        let path = if path.starts_with("/v1/webhooks/") {
            "/v1/webhooks/calendly".to_owned()
        } else {
            path
        };
        let body = (method != "GET").then(|| "{}".to_owned());
        let reply = service.send(method, &path, Some(&token), &[], body).await;
        assert!(
            !unrouted(reply.status, &reply.body),
            "{route}: the code does not serve it ({} {})",
            reply.status,
            reply.body
        );
        assert!(
            statuses.contains(&reply.status),
            "{route}: answered {}, documented {statuses:?}: {}",
            reply.status,
            reply.body
        );
    }
    // The probe can tell: an undocumented path is not served.
    let reply = service
        .send("GET", "/v1/admin/nothing", Some(&token), &[], None)
        .await;
    assert!(unrouted(reply.status, &reply.body), "{}", reply.body);
    let reply = service
        .send("DELETE", "/v1/sync/push", Some(&token), &[], None)
        .await;
    assert!(unrouted(reply.status, &reply.body), "{}", reply.body);
    service.running.stop().await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_gets_405_with_the_allow_header() {
    let service = Service::start(ServiceConfig::default()).await;
    let token = Service::admin_token("demo");
    let mut by_path: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for route in documented().into_keys() {
        let (method, path) = route.split_once(' ').expect("method and path");
        by_path
            .entry(path.to_owned())
            .or_default()
            .insert(method.to_owned());
    }
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (path, methods) in by_path {
        let concrete = concrete(&path, "calendly");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if methods.contains(method) {
                continue;
            }
            let reply = client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                    format!("{}{concrete}", service.url),
                )
                .bearer_auth(&token)
                .send()
                .await
                .expect("answered");
            assert_eq!(reply.status().as_u16(), 405, "{method} {path}");
            let allow: BTreeSet<String> = reply
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert_eq!(allow, methods, "{method} {path}");
            let body: serde_json::Value = reply.json().await.expect("a JSON error body");
            assert_eq!(body["error"]["code"], "method_not_allowed");
            checked += 1;
        }
    }
    assert!(checked > 80, "{checked} method/route pairs");
    service.running.stop().await;
}
