//! The `heph` binary as built: help, version and exit codes. (Being an
//! integration test of this package also makes `cargo test --workspace`
//! build `target/debug/heph` for the end-to-end suite in `tests/`.)

use std::process::Command;

fn heph(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_heph"))
        .args(args)
        .env("HOME", env!("CARGO_TARGET_TMPDIR"))
        .env("XDG_RUNTIME_DIR", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .unwrap()
}

#[test]
fn help_documents_the_exit_codes() {
    let o = heph(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    for line in [
        "0  success",
        "2  usage",
        "3  the heph daemon is not running",
        "4  action needed",
    ] {
        assert!(
            text.contains(line),
            "{line:?} missing from heph --help:\n{text}"
        );
    }
}

#[test]
fn version_and_usage_errors() {
    let o = heph(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("heph "));
    let o = heph(&["no-such-command"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}
