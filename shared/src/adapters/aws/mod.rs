//! The AWS adapters: DynamoDB (table), SQS (queue), S3 (blobs). Clients are built once
//! per cold start from one `aws_config` and lent to every invocation.

pub mod dynamodb;
pub mod s3;
pub mod sqs;

pub use dynamodb::DynamoTable;
pub use s3::S3Blobs;
pub use sqs::{QueueUrls, SqsQueue};

/// The SDK's error with its whole chain: `Display` on SDK errors only says "service error".
pub fn sdk_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    anyhow::anyhow!(text)
}
