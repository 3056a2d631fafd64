//! The AWS adapters: DynamoDB (table), SQS (queue), S3 (blobs). Clients are built once
//! per cold start from one `aws_config` and lent to every invocation.

pub mod dynamodb;
pub mod s3;
pub mod sqs;

use aws_smithy_http_client::tls::Provider;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
pub use dynamodb::DynamoTable;
pub use s3::S3Blobs;
pub use sqs::{QueueUrls, SqsQueue};

/// An SDK client made when first called: most invocations of most functions never call some
/// of them, and a client's making is part of a cold start otherwise.
pub type OnFirstUse<C> = std::sync::Arc<std::sync::LazyLock<C, Box<dyn FnOnce() -> C + Send>>>;

fn on_first_use<C>(make: impl FnOnce() -> C + Send + 'static) -> OnFirstUse<C> {
    std::sync::Arc::new(std::sync::LazyLock::new(Box::new(make)))
}

/// The HTTPS client of every SDK client, built on first use. Smithy builds a connector (a TLS
/// configuration, every trusted root parsed again) to validate each SDK client as it is made;
/// this one builds a connector when a request first needs it, once per connector settings.
/// Like smithy's `build_https`, it takes no proxy from the environment (Lambda needs none).
#[derive(Debug)]
pub struct HttpsOnFirstUse(SharedHttpClient);

impl HttpsOnFirstUse {
    pub fn new() -> Self {
        Self(aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc)).build_https())
    }
}

impl Default for HttpsOnFirstUse {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient for HttpsOnFirstUse {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

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
