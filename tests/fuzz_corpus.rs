//! Replays the fuzz corpus (`fuzz/corpus/<target>/`: seeds and every input that once crashed a
//! target) through the same entry points the cargo-fuzz targets call, so `cargo test` on stable
//! Rust keeps every fuzzer finding fixed. The request path runs on a current-thread runtime with
//! paused time, as in the fuzzer.

use std::path::PathBuf;
use std::sync::Arc;

use egressd::fuzzing;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{} has no inputs", dir.display());
    out
}

fn replay(target: &str, run: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(outcome.is_ok(), "{} fails again", path.display());
    }
}

#[test]
fn target_authority_corpus() {
    replay("target_authority", fuzzing::target_authority);
}

#[test]
fn policy_yaml_corpus() {
    replay("policy_yaml", fuzzing::policy_yaml);
}

#[test]
fn client_hello_corpus() {
    replay("client_hello", fuzzing::client_hello);
}

#[tokio::test(start_paused = true)]
async fn request_path_corpus() {
    let path = Arc::new(fuzzing::RequestPath::start().await);
    for (file, data) in corpus("request_path") {
        // `serve` panics on a broken invariant: in a task of its own, to name the input.
        let p = path.clone();
        let served = tokio::spawn(async move { p.serve(&data).await }).await;
        assert!(served.is_ok(), "{} fails again", file.display());
    }
}
