//! Creating and checking the table: its indexes, TTL, and waiting until it
//! is active.

use super::*;

impl DynamoStore {
    /// Creates the table with GSI1 and TTL on `ttl` unless it exists; makes
    /// sure TTL is enabled either way. Waits until the table is active.
    pub async fn ensure_table(&self) -> Result<TableStatus, StoreError> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
        };
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::InvalidUpdate(e.to_string());
        let gsi = GlobalSecondaryIndex::builder()
            .index_name(GSI1)
            .key_schema(key("GSI1PK", KeyType::Hash).map_err(build)?)
            .key_schema(key("GSI1SK", KeyType::Range).map_err(build)?)
            // `ttl` rides along so reads can skip expired subscriptions.
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("ttl")
                    .build(),
            )
            .build()
            .map_err(build)?;
        let gsi2 = GlobalSecondaryIndex::builder()
            .index_name(GSI2)
            .key_schema(key("GSI2PK", KeyType::Hash).map_err(build)?)
            .key_schema(key("GSI2SK", KeyType::Range).map_err(build)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(build)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("PK").map_err(build)?)
            .attribute_definitions(attr("SK").map_err(build)?)
            .attribute_definitions(attr("GSI1PK").map_err(build)?)
            .attribute_definitions(attr("GSI1SK").map_err(build)?)
            .attribute_definitions(attr("GSI2PK").map_err(build)?)
            .attribute_definitions(attr("GSI2SK").map_err(build)?)
            .key_schema(key("PK", KeyType::Hash).map_err(build)?)
            .key_schema(key("SK", KeyType::Range).map_err(build)?)
            .global_secondary_indexes(gsi)
            .global_secondary_indexes(gsi2.clone())
            .send()
            .await;
        let status = match created {
            Ok(_) => TableStatus::Created,
            Err(e) if e.code() == Some("ResourceInUseException") => TableStatus::AlreadyExisted,
            Err(e) => return Err(unavailable(e)),
        };
        self.wait_active().await?;
        if status == TableStatus::AlreadyExisted {
            self.add_index_if_missing(
                gsi2,
                vec![
                    attr("GSI2PK").map_err(build)?,
                    attr("GSI2SK").map_err(build)?,
                ],
            )
            .await?;
        }
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        let enabled = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status())
            .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
        if !enabled {
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name("ttl")
                        .build()
                        .map_err(build)?,
                )
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(status)
    }

    /// Adds `index` to a table made by an earlier version that lacks it.
    pub(super) async fn add_index_if_missing(
        &self,
        index: GlobalSecondaryIndex,
        attributes: Vec<AttributeDefinition>,
    ) -> Result<(), StoreError> {
        let d = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        let present = d
            .table()
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .any(|g| g.index_name() == Some(index.index_name()));
        if present {
            return Ok(());
        }
        tracing::info!(table = %self.table, index = index.index_name(), "adding a missing index");
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(index.index_name())
            .set_key_schema(Some(index.key_schema().to_vec()))
            .set_projection(index.projection().cloned())
            .build()
            .map_err(|e| StoreError::InvalidUpdate(e.to_string()))?;
        self.client
            .update_table()
            .table_name(&self.table)
            .set_attribute_definitions(Some(attributes))
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(create)
                    .build(),
            )
            .send()
            .await
            .map_err(unavailable)?;
        self.wait_active().await
    }

    pub(super) async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..120 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(unavailable)?;
            if d.table().and_then(|t| t.table_status()) == Some(&SdkTableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become active in time",
            self.table
        )))
    }

    /// Fails with a message naming the fix when the table is missing or unreachable.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Err(StoreError::Unavailable(format!(
                    "table '{}' does not exist; create it with `jobcast table create --table {}`",
                    self.table, self.table
                )))
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}
