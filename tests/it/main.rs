//! Integration tests: xg2g and the demo receiver in-process on ephemeral loopback ports.

mod cli;
mod common;
mod demo_streams;
mod detect;
mod encoder_queue;
mod guide;
mod hdhr;
mod hls;
mod load;
mod monitoring;
mod openwebif;
mod picons;
mod rate_limit;
mod reload;
mod server;
mod soak;
mod streams;
mod traces;
mod web;
