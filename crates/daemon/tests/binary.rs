//! The `hephd` binary as built: flags and `--print-config`. (Being an
//! integration test of this package also makes `cargo test --workspace`
//! build `target/debug/hephd` for the end-to-end suite in `tests/`.)

use std::process::Command;

fn hephd(args: &[&str]) -> std::process::Output {
    let home = env!("CARGO_TARGET_TMPDIR");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hephd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HEPH_") || k.starts_with("XDG_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).env("HOME", home).output().unwrap()
}

#[test]
fn print_config_shows_defaults_under_home() {
    let o = hephd(&["--print-config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let home = env!("CARGO_TARGET_TMPDIR");
    assert!(
        text.contains(&format!("db = \"{home}/.local/share/heph/heph.db\"")),
        "{text}"
    );
    assert!(text.contains("# default"), "{text}");
}

#[test]
fn a_bad_flag_value_is_a_usage_error() {
    let o = hephd(&["--log-format", "xml", "--print-config"]);
    assert_eq!(o.status.code(), Some(2));
    let o = hephd(&["--max-clock-skew", "soon"]);
    assert_eq!(o.status.code(), Some(2));
}
