#![no_main]
//! The DNS request path: packet bytes → decode → core answer → encode.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tribune::dns::fuzzing::dns_packet(data));
