#![no_main]
//! Fuzzes `kadmos_proto::fuzz_targets::bencode` (see that function for what it checks).

libfuzzer_sys::fuzz_target!(|data: &[u8]| kadmos_proto::fuzz_targets::bencode(data));
