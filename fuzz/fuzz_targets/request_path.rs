//! `cargo fuzz run request_path`: the input is everything one client sends on one connection
//! (`:8080` stands for the origin's port); see `egressd::fuzzing::RequestPath`. One server state
//! and one current-thread runtime with paused time serve every input.
#![no_main]

use std::sync::OnceLock;

use egressd::fuzzing::RequestPath;
use tokio::runtime::{Builder, Runtime};

fn state() -> &'static (Runtime, RequestPath) {
    static STATE: OnceLock<(Runtime, RequestPath)> = OnceLock::new();
    STATE.get_or_init(|| {
        let rt = Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        let path = rt.block_on(RequestPath::start());
        (rt, path)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (rt, path) = state();
    rt.block_on(path.serve(data));
});
