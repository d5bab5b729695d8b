//! docs/openapi.yaml names exactly the routes the template deploys, and the
//! code serves every one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde_json::json;
use syncline_tests::demo_sources;
use syncline_tests::service::{Service, ServiceConfig, repo_root};

/// Documented routes with the statuses each may answer.
fn documented() -> BTreeMap<String, BTreeSet<u16>> {
    let text = std::fs::read_to_string(format!("{}/docs/openapi.yaml", repo_root()))
        .expect("docs/openapi.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("OpenAPI is YAML");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let mut routes = BTreeMap::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        let path = path.as_str().expect("path");
        for (method, operation) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method");
            if ["get", "put", "post", "delete", "patch"].contains(&method) {
                let statuses = operation["responses"]
                    .as_mapping()
                    .expect("responses")
                    .keys()
                    .map(|k| k.as_str().expect("status").parse().expect("numeric status"))
                    .collect();
                routes.insert(format!("{} {path}", method.to_uppercase()), statuses);
            }
        }
    }
    routes
}

fn deployed() -> BTreeSet<String> {
    let template = super::infra_template::template();
    let mut routes = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().expect("resources") {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let properties = &event["Properties"];
                routes.insert(format!(
                    "{} {}",
                    properties["Method"].as_str().expect("method"),
                    properties["Path"].as_str().expect("path")
                ));
            }
        }
    }
    routes
}

#[test]
fn the_openapi_document_names_exactly_the_deployed_routes() {
    let documented: BTreeSet<String> = documented().into_keys().collect();
    let deployed = deployed();
    assert_eq!(
        documented.difference(&deployed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "documented but not deployed"
    );
    assert_eq!(
        deployed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "deployed but not documented"
    );
    assert!(documented.len() >= 20, "{documented:?}");
}

/// The code's answer is "no such route" (404 route, or 405).
fn unrouted(status: u16, body: &serde_json::Value) -> bool {
    status == 405 || (status == 404 && body["error"]["message"] == json!("route not found"))
}

#[tokio::test]
async fn the_code_serves_every_documented_route() {
    let demo = syncline_local::demo::serve(SocketAddr::from(([127, 0, 0, 1], 0)), 5)
        .await
        .expect("demo");
    let service = Service::start(ServiceConfig {
        sources: Some(demo_sources(demo)),
        ..ServiceConfig::default()
    })
    .await;
    let token = Service::admin_token("demo");
    for (route, statuses) in documented() {
        let (method, path) = route.split_once(' ').expect("method and path");
        let path = path
            .replace("{source}", "demo-properties")
            .replace("{destination}", "nope")
            .replace("{action}", "enable")
            .replace("{entity}", "task")
            .replace("{id}", "nope")
            .replace("{asset}", "console.js");
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
        let concrete = path
            .replace("{source}", "calendly")
            .replace("{destination}", "nope")
            .replace("{action}", "enable")
            .replace("{entity}", "task")
            .replace("{id}", "nope")
            .replace("{asset}", "console.js");
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
