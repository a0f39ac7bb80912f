//! Integration tests: xg2g and the demo receiver in-process on ephemeral loopback ports.
// Tests run the tools nobody here wrote (ffprobe, ffmpeg, tv_validate_file, promtool, chromium)
// and the xg2g binary itself; the house ban on spawning processes is for the product.
#![allow(clippy::disallowed_methods)]

mod browser;
mod cli;
mod common;
mod demo_streams;
mod detect;
mod encoder_queue;
mod faults;
mod guide;
mod hdhr;
mod hdhr_discovery;
mod hls;
mod ladder;
mod ladder_players;
mod load;
mod monitoring;
mod mpegts;
mod now_next;
mod openwebif;
mod picons;
mod players;
mod rate_limit;
mod reload;
mod server;
mod signed;
mod signed_players;
mod signin;
mod soak;
mod streams;
mod tokens;
mod traces;
mod web;
