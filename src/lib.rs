//! xg2g: an Enigma2 receiver as a streaming server every client can play.

pub mod config;
pub mod demo;
pub mod model;
