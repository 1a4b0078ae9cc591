//! The `heph-tui` binary as built: help and version, without a terminal.
//! (Being an integration test of this package also makes `cargo test
//! --workspace` build `target/debug/heph-tui` for the end-to-end suite.)

use std::process::Command;

#[test]
fn help_and_version_need_no_terminal() {
    let o = Command::new(env!("CARGO_BIN_EXE_heph-tui"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("hephd"));
    let o = Command::new(env!("CARGO_BIN_EXE_heph-tui"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("heph-tui "));
}
