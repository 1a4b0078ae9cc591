//! `heph-tui`: parses flags, resolves where the daemon is, and runs the UI.

use std::process::ExitCode;

use clap::Parser;
use heph_tui::settings::{Args, Settings};

fn main() -> ExitCode {
    let args = Args::parse();
    let env = |k: &str| std::env::var(k).ok();
    let settings = match Settings::resolve(&args, &env, &|p| std::fs::read_to_string(p)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match heph_tui::run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot drive the terminal: {e}");
            ExitCode::FAILURE
        }
    }
}
