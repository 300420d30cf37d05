//! Running the built `augur` binary from the CLI tests (`tests/cli*.rs` include this with
//! `mod cli_support;`): each test file uses the part it needs.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs `augur ARGS` from the package root (where `../shared/traces` resolves).
pub fn augur(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_augur"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the augur binary runs")
}

/// Its standard output, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = augur(args);
    assert!(
        o.status.success(),
        "augur {args:?} failed ({:?}):\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}
