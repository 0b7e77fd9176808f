#![no_main]
//! Any bytes as a request body named as source `trivy`: no input may panic.

use falconer_hub::sources::Source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| falconer_hub::sources::fuzz::one(Some(Source::Trivy), data));
