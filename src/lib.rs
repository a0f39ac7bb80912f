//! xg2g: an Enigma2 receiver as a streaming server every client can play.

pub mod app;
pub mod auth;
mod cache;
pub mod catalog;
pub mod config;
pub mod demo;
#[doc(hidden)]
pub mod fuzz_api;
pub mod gpu;
pub mod hdhr;
mod http;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod mpegts;
pub mod picon;
pub mod pipeline;
pub mod preview;
pub mod session;
pub mod telemetry;
pub mod upstream;
