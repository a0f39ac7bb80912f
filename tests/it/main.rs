//! Integration tests: xg2g and the demo receiver in-process on ephemeral loopback ports.

mod cli;
mod common;
mod demo_streams;
mod detect;
mod guide;
mod hdhr;
mod hls;
mod openwebif;
mod picons;
mod reload;
mod server;
mod soak;
mod streams;
mod web;
