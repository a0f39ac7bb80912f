#![no_main]
//! `xg2g::fuzz_api::requests`: see its docs for the property checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xg2g::fuzz_api::requests(data));
