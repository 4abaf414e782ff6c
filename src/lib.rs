//! hostbeat: a lightweight host-monitoring agent.
//!
//! The daemon samples the host ([`collect`]), turns each sample into a
//! Server Density postback ([`payload`]) and delivers it at most once per
//! minute ([`postback`]). [`config`] holds the TOML schema, [`metrics`] the
//! stable metric names, [`daemon`] the wiring of it all.

pub mod alert;
pub mod api;
pub mod collect;
pub mod config;
pub mod custom;
pub mod daemon;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod payload;
pub mod plugin;
pub mod postback;
pub mod prometheus;
pub mod residency;
pub mod retry;
pub mod sampler;
pub mod secret;
pub mod store;
pub mod timefmt;
pub mod webhook;
