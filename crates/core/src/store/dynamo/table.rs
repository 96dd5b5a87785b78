//! Creating and checking the table: its indexes, TTL, and waiting until it
//! is active.

use super::*;

impl DynamoStore {
    /// Creates the table with its indexes and TTL on `ttl` unless it
    /// exists; adds GSI2 and GSI3 to a table made before them; makes sure TTL is
    /// enabled either way. Waits until the table is active.
    pub async fn ensure_table(&self) -> Result<TableStatus, StoreError> {
        let status = self.create_table().await?;
        self.wait_active().await?;
        if status == TableStatus::AlreadyExisted {
            self.add_index_if_missing(deadlines_index()?, vec![attr("GSI2PK")?, attr("GSI2SK")?])
                .await?;
            self.add_index_if_missing(owners_index()?, vec![attr("GSI3PK")?, attr("GSI3SK")?])
                .await?;
        }
        self.ensure_ttl().await?;
        Ok(status)
    }

    async fn create_table(&self) -> Result<TableStatus, StoreError> {
        let mut req = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("PK", KeyType::Hash)?)
            .key_schema(key("SK", KeyType::Range)?)
            .global_secondary_indexes(subscriptions_index()?)
            .global_secondary_indexes(deadlines_index()?)
            .global_secondary_indexes(owners_index()?);
        for name in [
            "PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK",
        ] {
            req = req.attribute_definitions(attr(name)?);
        }
        match req.send().await {
            Ok(_) => Ok(TableStatus::Created),
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(TableStatus::AlreadyExisted),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn ensure_ttl(&self) -> Result<(), StoreError> {
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
                        .map_err(request_error)?,
                )
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
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
            .map_err(request_error)?;
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

fn attr(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(request_error)
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(request_error)
}

fn index(
    name: &str,
    hash: &str,
    range: &str,
    projection: Projection,
) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(projection)
        .build()
        .map_err(request_error)
}

/// GSI1: a connection's subscriptions. `ttl` rides along so reads can skip
/// expired ones.
fn subscriptions_index() -> Result<GlobalSecondaryIndex, StoreError> {
    index(
        GSI1,
        "GSI1PK",
        "GSI1SK",
        Projection::builder()
            .projection_type(ProjectionType::Include)
            .non_key_attributes("ttl")
            .build(),
    )
}

/// GSI2: liveness deadlines of running worker-kind jobs (sparse).
fn deadlines_index() -> Result<GlobalSecondaryIndex, StoreError> {
    index(
        GSI2,
        "GSI2PK",
        "GSI2SK",
        Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build(),
    )
}

/// GSI3: an owner's jobs by creation time (sparse: only owned jobs), the
/// whole item projected so a page is one Query.
fn owners_index() -> Result<GlobalSecondaryIndex, StoreError> {
    index(
        GSI3,
        "GSI3PK",
        "GSI3SK",
        Projection::builder()
            .projection_type(ProjectionType::All)
            .build(),
    )
}
