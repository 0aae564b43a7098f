#![no_main]
//! Server RPC bodies (join exchange, read index, membership, AppendEntries,
//! votes, snapshot chunks): postcard bytes → typed message → bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tribune::raft::rpc::fuzzing(data));
