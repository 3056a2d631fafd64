//! OLChat for Telegram: everything but the wiring. See DESIGN.md for the layers.

pub mod adapters;
pub mod app;
pub mod auth;
pub mod bitrix;
pub mod clock;
pub mod crypto;
pub mod domain;
pub mod embedded;
pub mod http;
pub mod i18n;
pub mod jobs;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod links;
pub mod ports;
pub mod repo;
pub mod sandbox;
pub mod settings;
pub mod telemetry;
pub mod work;
