//! Replays the saved fuzz corpora (`fuzz/corpus/<target>/`, minimised) and the inputs that
//! once crashed a target (`fuzz/regressions/<target>/`) through the same functions the fuzzers
//! call, so CI keeps every decoder and both nodes free of the panics fuzzing found, without a
//! fuzzer installed.

use std::path::PathBuf;

use kadmos_proto::fuzz_targets::TARGETS;

fn inputs(folder: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(folder).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    files.into_iter().map(|path| (path.clone(), std::fs::read(&path).unwrap())).collect()
}

/// Every saved input of every target runs to the end without a panic (each target also
/// checks its round-trip properties), and every target has a corpus to replay.
#[test]
fn saved_corpora_replay_cleanly() {
    for (target, run) in TARGETS {
        let corpus = inputs("corpus", target);
        assert!(corpus.len() >= 10, "fuzz/corpus/{target} holds {} inputs", corpus.len());
        for (path, data) in corpus.iter().chain(&inputs("regressions", target)) {
            if let Err(panic) = std::panic::catch_unwind(|| run(data)) {
                panic!("{target}: {} panics: {panic:?}", path.display());
            }
        }
    }
}
