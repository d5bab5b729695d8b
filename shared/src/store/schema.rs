//! The table's shape, in one place: tests and local runs create the table
//! from it, and a test checks that `infra/template.yaml` deploys the same
//! shape.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::build_error;
use super::keys::{BY_ORD, EXPIRES_AT, ORD, PK, SK};
use super::store_error;
use crate::error::{Error, Result};

/// The table's shape in plain terms, for comparison with the deployed
/// template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// (attribute name, scalar type) of every key attribute.
    pub attributes: Vec<(&'static str, &'static str)>,
    pub hash_key: &'static str,
    pub range_key: &'static str,
    /// (index name, hash key, range key, projection type).
    pub local_indexes: Vec<(&'static str, &'static str, &'static str, &'static str)>,
    pub ttl_attribute: &'static str,
    pub billing_mode: &'static str,
}

pub fn shape() -> TableShape {
    TableShape {
        attributes: vec![(PK, "S"), (SK, "S"), (ORD, "N")],
        hash_key: PK,
        range_key: SK,
        local_indexes: vec![(BY_ORD, PK, ORD, "KEYS_ONLY")],
        ttl_attribute: EXPIRES_AT,
        billing_mode: "PAY_PER_REQUEST",
    }
}

fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(build_error)
}

/// Creates `table` with the shape above if it does not exist yet, waits for
/// it to become active and turns on TTL. Safe to call on every start.
pub async fn ensure_table(client: &Client, table: &str) -> Result<()> {
    let shape = shape();
    let mut create = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::from(shape.billing_mode))
        .key_schema(key(shape.hash_key, KeyType::Hash)?)
        .key_schema(key(shape.range_key, KeyType::Range)?);
    for (name, kind) in &shape.attributes {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(*name)
                .attribute_type(ScalarAttributeType::from(*kind))
                .build()
                .map_err(build_error)?,
        );
    }
    for (name, hash, range, projection) in &shape.local_indexes {
        create = create.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(*name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(*projection))
                        .build(),
                )
                .build()
                .map_err(build_error)?,
        );
    }
    match create.send().await {
        Ok(_) => {}
        Err(err) if err.code() == Some("ResourceInUseException") => {}
        Err(err) => return Err(store_error("CreateTable", err)),
    }
    wait_until_active(client, table).await?;

    let ttl = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(shape.ttl_attribute)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await;
    match ttl {
        Ok(_) => Ok(()),
        // Already enabled: DynamoDB refuses to set it twice.
        Err(err) if err.code() == Some("ValidationException") => Ok(()),
        Err(err) => Err(store_error("UpdateTimeToLive", err)),
    }
}

async fn wait_until_active(client: &Client, table: &str) -> Result<()> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| store_error("DescribeTable", e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(Error::internal(format!(
        "table {table} did not become active"
    )))
}
