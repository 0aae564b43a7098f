//! Replays the `dns_packet` fuzz corpus through the DNS request path on
//! stable Rust, so `cargo test` keeps every seed and found crash fixed.

use std::path::Path;

#[test]
fn dns_packet_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dns_packet");
    let entries = std::fs::read_dir(&dir).expect("the dns_packet corpus exists");
    let mut replayed = 0;
    for entry in entries {
        let path = entry.expect("readable corpus entry").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| tribune::dns::fuzzing::dns_packet(&data));
        assert!(outcome.is_ok(), "{} breaks a property", path.display());
        replayed += 1;
    }
    assert!(replayed >= 10, "only {replayed} seeds in {}", dir.display());
}
