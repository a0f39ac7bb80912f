//! xg2g: an Enigma2 receiver as a streaming server every client can play.

pub mod app;
pub mod catalog;
pub mod config;
pub mod demo;
mod http;
pub mod metrics;
pub mod model;
pub mod telemetry;
pub mod upstream;
