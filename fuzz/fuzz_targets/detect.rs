#![no_main]
//! Any bytes as a request body whose source is detected from its shape: no input may panic.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| falconer_hub::sources::fuzz::one(None, data));
