#![no_main]
//! Fuzz target `frame`: see `fuzz/targets.rs`.

#[allow(dead_code)] // each binary uses one of the shared bodies
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::frame(data));
