//! Tells the real-trace tests whether they can run: `cfg(augur_traces)` when
//! `../shared/traces/` exists, `cfg(augur_require_traces)` when `AUGUR_REQUIRE_TRACES=1`
//! (CI). Without either the tests are `#[ignore]`d with the reason "needs ../shared/traces",
//! so a clone without the traces reports them as ignored, not passed; with
//! `AUGUR_REQUIRE_TRACES=1` they run, and fail if the traces are missing.
//!
//! Cargo reruns this script when `AUGUR_REQUIRE_TRACES` changes or the traces folder changes;
//! when the folder did not exist at the last build, `touch build.rs` (or set
//! `AUGUR_REQUIRE_TRACES=1`) after adding it.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(augur_traces)");
    println!("cargo::rustc-check-cfg=cfg(augur_require_traces)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=AUGUR_REQUIRE_TRACES");
    let traces = Path::new("../shared/traces");
    if traces.is_dir() {
        // Only an existing path: a missing one would make Cargo rerun this on every build.
        println!("cargo::rerun-if-changed=../shared/traces");
        println!("cargo::rustc-cfg=augur_traces");
    }
    if std::env::var("AUGUR_REQUIRE_TRACES").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=augur_require_traces");
    }
}
