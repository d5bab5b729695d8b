//! The shapes `infra/template.yaml` deploys are the ones the code creates
//! for local runs and tests.

use serde_yaml::Value;
use syncline::queue::definition;
use syncline::store::schema;

pub(crate) fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    let text = std::fs::read_to_string(path).expect("template readable");
    serde_yaml::from_str(&text).expect("template is YAML")
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn key_schema(value: &Value) -> Vec<(String, String)> {
    value
        .as_sequence()
        .expect("key schema list")
        .iter()
        .map(|k| (text(&k["AttributeName"]), text(&k["KeyType"])))
        .collect()
}

#[test]
fn the_deployed_table_has_the_shape_the_code_creates() {
    let template = template();
    let table = &template["Resources"]["Table"]["Properties"];
    let shape = schema::shape();

    let mut attributes: Vec<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .expect("attribute definitions")
        .iter()
        .map(|a| (text(&a["AttributeName"]), text(&a["AttributeType"])))
        .collect();
    attributes.sort();
    let mut expected: Vec<(String, String)> = shape
        .attributes
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(attributes, expected);

    assert_eq!(
        key_schema(&table["KeySchema"]),
        vec![
            (shape.hash_key.to_owned(), "HASH".to_owned()),
            (shape.range_key.to_owned(), "RANGE".to_owned())
        ]
    );
    let indexes = table["LocalSecondaryIndexes"]
        .as_sequence()
        .expect("local indexes");
    assert_eq!(indexes.len(), shape.local_indexes.len());
    for (index, (name, hash, range, projection)) in indexes.iter().zip(&shape.local_indexes) {
        assert_eq!(text(&index["IndexName"]), *name);
        assert_eq!(
            key_schema(&index["KeySchema"]),
            vec![
                ((*hash).to_owned(), "HASH".to_owned()),
                ((*range).to_owned(), "RANGE".to_owned())
            ]
        );
        assert_eq!(text(&index["Projection"]["ProjectionType"]), *projection);
    }
    assert!(table["GlobalSecondaryIndexes"].is_null());
    assert_eq!(
        text(&table["TimeToLiveSpecification"]["AttributeName"]),
        shape.ttl_attribute
    );
    assert_eq!(text(&table["TimeToLiveSpecification"]["Enabled"]), "true");
    assert_eq!(text(&table["BillingMode"]), shape.billing_mode);
}

#[test]
fn the_deployed_retry_queue_has_the_shape_the_code_expects() {
    let template = template();
    let queue = &template["Resources"]["RetryQueue"]["Properties"];
    assert_eq!(
        text(&queue["VisibilityTimeout"]),
        definition::VISIBILITY_TIMEOUT.as_secs().to_string()
    );
    assert_eq!(
        text(&queue["RedrivePolicy"]["maxReceiveCount"]),
        definition::MAX_RECEIVES.to_string()
    );
    let dead_letter = &template["Resources"]["DeadLetterQueue"]["Properties"];
    assert_eq!(
        text(&dead_letter["MessageRetentionPeriod"]),
        definition::DEAD_LETTER_RETENTION.as_secs().to_string()
    );
    // Every function is told where the table and both queues are.
    let variables = &template["Globals"]["Function"]["Environment"]["Variables"];
    for name in [
        "SYNCLINE_TABLE",
        "SYNCLINE_RETRY_QUEUE_URL",
        "SYNCLINE_DEAD_LETTER_QUEUE_URL",
    ] {
        assert!(!variables[name].is_null(), "{name} is not set");
    }
}

#[test]
fn the_retry_worker_reports_partial_batch_failures_and_outlives_no_visibility_timeout() {
    let template = template();
    let function = &template["Resources"]["RetryWorkerFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "retry-worker"
    );
    let event = &function["Properties"]["Events"]["Retries"]["Properties"];
    let response_types: Vec<String> = event["FunctionResponseTypes"]
        .as_sequence()
        .expect("response types")
        .iter()
        .map(text)
        .collect();
    assert_eq!(response_types, vec!["ReportBatchItemFailures"]);

    let timeout: u64 = text(&function["Properties"]["Timeout"])
        .parse()
        .expect("seconds");
    let visibility: u64 =
        text(&template["Resources"]["RetryQueue"]["Properties"]["VisibilityTimeout"])
            .parse()
            .expect("seconds");
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility}s < 6 x {timeout}s"
    );
}

#[test]
fn the_webhook_function_serves_its_route_and_reads_its_sources() {
    let template = template();
    let function = &template["Resources"]["WebhookFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "webhook"
    );
    let event = &function["Properties"]["Events"]["Webhook"]["Properties"];
    assert_eq!(text(&event["Method"]), "POST");
    assert_eq!(text(&event["Path"]), "/v1/webhooks/{source}");
    assert!(
        !function["Properties"]["Environment"]["Variables"]["SYNCLINE_WEBHOOK_SOURCES"].is_null()
    );
}

#[test]
fn the_sync_api_serves_every_route_behind_the_jwt_authorizer() {
    let template = template();
    let function = &template["Resources"]["SyncApiFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "sync-api"
    );
    let events = function["Properties"]["Events"]
        .as_mapping()
        .expect("events");
    let mut routes: Vec<String> = events
        .values()
        .map(|event| {
            let properties = &event["Properties"];
            assert_eq!(text(&properties["Auth"]["Authorizer"]), "ClientJwt");
            format!(
                "{} {}",
                text(&properties["Method"]),
                text(&properties["Path"])
            )
        })
        .collect();
    routes.sort();
    assert_eq!(
        routes,
        vec![
            "GET /v1/sync/conflicts",
            "GET /v1/sync/records/{entity}/{id}",
            "GET /v1/sync/slots",
            "POST /api/client/sync/pull",
            "POST /api/client/sync/pull-pending",
            "POST /api/client/sync/push",
            "POST /v1/sync/conflicts/{id}/resolve",
            "POST /v1/sync/pull",
            "POST /v1/sync/push",
        ]
    );
}

#[test]
fn scheduled_sync_runs_on_a_schedule_and_continuations_reach_the_retry_worker() {
    let template = template();
    let function = &template["Resources"]["ScheduledSyncFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "scheduled-sync"
    );
    let schedule = &function["Properties"]["Events"]["EveryMinute"];
    assert_eq!(text(&schedule["Type"]), "ScheduleV2");
    // As often as the shortest interval a source may have (1m), so a
    // 5-minute source runs every 5 minutes deployed too.
    assert_eq!(
        text(&schedule["Properties"]["ScheduleExpression"]),
        "rate(1 minute)"
    );
    assert!(syncline::model::Interval::parse("1m").is_ok());
    assert!(syncline::model::Interval::parse("30s").is_err());
    assert_eq!(text(&function["Properties"]["Timeout"]), "900");
    for name in ["ScheduledSyncFunction", "RetryWorkerFunction"] {
        let variables = &template["Resources"][name]["Properties"]["Environment"]["Variables"];
        assert!(
            !variables["SYNCLINE_SOURCES"].is_null(),
            "{name} needs the sources"
        );
    }
}

#[test]
fn the_admin_api_serves_its_routes_behind_the_authorizer() {
    let template = template();
    let function = &template["Resources"]["AdminApiFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "admin-api"
    );
    let events = function["Properties"]["Events"]
        .as_mapping()
        .expect("events");
    let routes: Vec<String> = events
        .values()
        .map(|e| {
            format!(
                "{} {}",
                text(&e["Properties"]["Method"]),
                text(&e["Properties"]["Path"])
            )
        })
        .collect();
    for route in [
        "GET /v1/admin/status",
        "GET /v1/admin/health",
        "PUT /v1/admin/settings",
        "POST /v1/admin/sync/{source}/records/{id}",
        "POST /v1/admin/dead-letters/redrive",
        "GET /v1/admin/dashboard",
        "GET /v1/admin/history",
        "GET /v1/admin/conflicts",
        "POST /v1/admin/conflicts/{id}/resolve",
        "GET /v1/admin/console",
        "GET /v1/admin/console/{asset}",
    ] {
        assert!(routes.iter().any(|r| r == route), "{route} missing");
    }
    // Every route behind the authorizer but the console's page and assets,
    // which carry no data.
    for event in events.values() {
        let path = text(&event["Properties"]["Path"]);
        let auth = &event["Properties"]["Auth"];
        if path == "/v1/admin/console" || path.starts_with("/v1/admin/console/") {
            assert!(auth.is_null(), "{path}: {auth:?}");
        } else {
            assert_eq!(text(&auth["Authorizer"]), "ClientJwt", "{path}");
        }
    }
}

#[test]
fn the_discrepancy_check_runs_daily_with_repair() {
    let template = template();
    let function = &template["Resources"]["DiscrepancyCheckFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "discrepancy-check"
    );
    let daily = &function["Properties"]["Events"]["Daily"]["Properties"];
    assert_eq!(text(&daily["ScheduleExpression"]), "rate(1 day)");
    assert!(text(&daily["Input"]).contains("\"repair\": true"));
}

#[test]
fn delivery_is_woken_by_the_tables_stream_with_a_schedule_as_backstop() {
    let template = template();
    assert_eq!(
        text(
            &template["Resources"]["Table"]["Properties"]["StreamSpecification"]["StreamViewType"]
        ),
        "KEYS_ONLY"
    );
    let function = &template["Resources"]["DeliveryFunction"];
    assert_eq!(
        text(&function["Metadata"]["BuildProperties"]["Binary"]),
        "delivery"
    );
    let events = &function["Properties"]["Events"];
    assert_eq!(text(&events["Changes"]["Type"]), "DynamoDB");
    let pattern: serde_json::Value = serde_json::from_str(&text(
        &events["Changes"]["Properties"]["FilterCriteria"]["Filters"][0]["Pattern"],
    ))
    .expect("a JSON filter pattern");
    assert_eq!(
        pattern["dynamodb"]["Keys"]["pk"]["S"][0]["prefix"],
        serde_json::json!("T#"),
        "only record and counter changes wake it"
    );
    assert_eq!(
        text(&events["Backstop"]["Properties"]["ScheduleExpression"]),
        "rate(1 minute)"
    );
    for name in [
        "DeliveryFunction",
        "RetryWorkerFunction",
        "AdminApiFunction",
    ] {
        let variables = &template["Resources"][name]["Properties"]["Environment"]["Variables"];
        assert!(
            !variables["SYNCLINE_DESTINATIONS"].is_null(),
            "{name} reads the destinations"
        );
    }
    for alarm in ["DeliveryLagAlarm", "DeliveryDeadAlarm"] {
        let properties = &template["Resources"][alarm]["Properties"];
        assert_eq!(text(&properties["Namespace"]), "syncline", "{alarm}");
        assert_eq!(
            text(&properties["Dimensions"][0]["Value"]),
            "delivery",
            "{alarm} watches what the delivery function emits"
        );
    }
}

/// The text of a `!Sub` (or any tagged) value, else the scalar.
fn sub(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) => text(&tagged.value),
        other => text(other),
    }
}

#[test]
fn the_realtime_channel_is_a_websocket_api_whose_routes_reach_the_realtime_function() {
    let template = template();
    let resources = &template["Resources"];
    assert_eq!(
        text(&resources["WebSocketApi"]["Properties"]["ProtocolType"]),
        "WEBSOCKET"
    );
    let integration = &resources["WebSocketIntegration"]["Properties"];
    assert_eq!(text(&integration["IntegrationType"]), "AWS_PROXY");
    assert!(sub(&integration["IntegrationUri"]).contains("${RealtimeFunction.Arn}"));
    let mut routes: Vec<String> = resources
        .as_mapping()
        .expect("resources")
        .values()
        .filter(|r| text(&r["Type"]) == "AWS::ApiGatewayV2::Route")
        .map(|r| {
            assert_eq!(
                sub(&r["Properties"]["Target"]),
                "integrations/${WebSocketIntegration}"
            );
            text(&r["Properties"]["RouteKey"])
        })
        .collect();
    routes.sort();
    assert_eq!(routes, ["$connect", "$default", "$disconnect"]);
    assert!(
        sub(&resources["WebSocketInvokePermission"]["Properties"]["SourceArn"])
            .contains("${WebSocketApi}")
    );

    let realtime = &resources["RealtimeFunction"];
    assert_eq!(
        text(&realtime["Metadata"]["BuildProperties"]["Binary"]),
        "realtime"
    );
    let variables = &realtime["Properties"]["Environment"]["Variables"];
    assert!(
        !variables["SYNCLINE_JWT_JWKS"].is_null(),
        "no JWT authorizer on a WebSocket API: the function checks tokens"
    );
    assert!(variables["SYNCLINE_TRUST_AUTHORIZER"].is_null());

    // delivery pokes through the stage's management endpoint, and may.
    let delivery = &resources["DeliveryFunction"]["Properties"];
    let endpoint = sub(&delivery["Environment"]["Variables"]["SYNCLINE_WEBSOCKET_ENDPOINT"]);
    assert!(
        endpoint.starts_with("https://${WebSocketApi}.execute-api."),
        "{endpoint}"
    );
    assert!(endpoint.ends_with("/${WebSocketStage}"), "{endpoint}");
    let manages = delivery["Policies"]
        .as_sequence()
        .expect("policies")
        .iter()
        .any(|p| {
            p["Statement"].as_sequence().into_iter().flatten().any(|s| {
                text(&s["Action"]) == "execute-api:ManageConnections"
                    && sub(&s["Resource"]).contains("/@connections/")
            })
        });
    assert!(manages, "delivery may post to and delete connections");

    // A long-poll fits in the sync API's timeout.
    let timeout: u32 = text(&resources["SyncApiFunction"]["Properties"]["Timeout"])
        .parse()
        .expect("a timeout");
    assert!(timeout >= syncline::sync::MAX_WAIT_SECS + 5, "{timeout}");
}
