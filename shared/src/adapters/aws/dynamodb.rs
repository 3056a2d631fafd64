//! The table port on one DynamoDB table (`pk`, `sk` strings; `data`, `version`,
//! `expires_at`, which is also the table's TTL attribute).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{OnFirstUse, on_first_use, sdk_error};
use crate::clock::now_secs;
use crate::ports::{Condition, Item, Table, TableError};

/// DynamoDB deletes expired items lazily (within days): reads filter them too.
const LIVE: &str = "attribute_not_exists(expires_at) OR expires_at > :now";

#[derive(Clone)]
pub struct DynamoTable {
    client: OnFirstUse<Client>,
    table: String,
}

impl DynamoTable {
    /// Over the client `make` makes when first called.
    pub fn new(make: impl FnOnce() -> Client + Send + 'static, table: impl Into<String>) -> Self {
        Self { client: on_first_use(make), table: table.into() }
    }

    async fn select(&self, pk: &str, condition: &str, bounds: &[(&str, &str)], limit: usize, descending: bool, except: Option<&str>) -> Result<Vec<Item>, TableError> {
        let mut out = Vec::new();
        let mut start: Option<Attributes> = None;
        // A filter applies after DynamoDB's page limit, so page until enough live items are in.
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .filter_expression(LIVE)
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":now", n(now_secs()));
            for (name, value) in bounds {
                request = request.expression_attribute_values(*name, s(value));
            }
            let answer = request
                .scan_index_forward(!descending)
                .limit(limit.clamp(1, 1000) as i32)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| TableError::Backend(sdk_error(e)))?;
            for attrs in answer.items() {
                let item = to_item(attrs)?;
                if except != Some(item.sk.as_str()) {
                    out.push(item);
                }
            }
            match answer.last_evaluated_key() {
                Some(key) if out.len() < limit => start = Some(key.clone()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}

type Attributes = HashMap<String, AttributeValue>;

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_item(attrs: &Attributes) -> Result<Item, TableError> {
    let text = |name: &str| attrs.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| attrs.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
    let missing = || TableError::Backend(anyhow::anyhow!("a stored item lacks pk, sk or data"));
    Ok(Item {
        pk: text("pk").ok_or_else(missing)?,
        sk: text("sk").ok_or_else(missing)?,
        data: text("data").ok_or_else(missing)?,
        version: number("version").unwrap_or(0) as u64,
        expires_at: number("expires_at"),
    })
}

fn is_live(item: &Item) -> bool {
    item.expires_at.is_none_or(|at| at > now_secs())
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| TableError::Backend(sdk_error(e)))?;
        answer.item().map(to_item).transpose().map(|item| item.filter(is_live))
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), TableError> {
        let mut attrs: Attributes =
            [("pk", s(&item.pk)), ("sk", s(&item.sk)), ("data", s(&item.data)), ("version", n(item.version))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        if let Some(at) = item.expires_at {
            attrs.insert("expires_at".into(), n(at));
        }
        let request = self.client.put_item().table_name(&self.table).set_item(Some(attrs));
        let request = match condition {
            Condition::Always => request,
            Condition::Absent => request
                .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
                .expression_attribute_values(":now", n(now_secs())),
            Condition::Version(version) => request
                .condition_expression(format!("version = :version AND ({LIVE})"))
                .expression_attribute_values(":version", n(version))
                .expression_attribute_values(":now", n(now_secs())),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                Err(TableError::ConditionFailed)
            }
            Err(e) => Err(TableError::Backend(sdk_error(e))),
        }
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), TableError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| TableError::Backend(sdk_error(e)))?;
        Ok(())
    }

    async fn query(&self, pk: &str, sk_prefix: &str, limit: usize, descending: bool) -> Result<Vec<Item>, TableError> {
        // DynamoDB refuses an empty prefix: no prefix is the whole partition.
        if sk_prefix.is_empty() {
            return self.select(pk, "pk = :pk", &[], limit, descending, None).await;
        }
        self.select(pk, "pk = :pk AND begins_with(sk, :from)", &[(":from", sk_prefix)], limit, descending, None).await
    }

    async fn query_below(&self, pk: &str, sk_prefix: &str, below: &str, limit: usize) -> Result<Vec<Item>, TableError> {
        // A key condition has one test of the sort key: BETWEEN takes both bounds, and `below`
        // itself, which BETWEEN includes, is left out.
        let condition = "pk = :pk AND sk BETWEEN :from AND :to";
        self.select(pk, condition, &[(":from", sk_prefix), (":to", below)], limit, true, Some(below)).await
    }
}
