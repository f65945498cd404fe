//! echo-gateway: a declarative, config-driven mock HTTP gateway on Pingora.
//!
//! Config files and the admin API feed two layers of endpoints; both compile
//! into one immutable [`router::Router`] held in an `ArcSwap`; the Pingora
//! proxy in [`proxy`] answers from it, or passes requests through.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod config;
pub mod emf;
#[doc(hidden)]
pub mod fuzzing;
pub mod healthcheck;
pub mod journal;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod tls;
