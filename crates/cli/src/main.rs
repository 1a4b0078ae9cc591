//! The `heph` binary: hands the process arguments to [`heph::main`] and
//! exits with the code it returns. Everything else lives in the library.

fn main() -> std::process::ExitCode {
    heph::main(std::env::args_os())
}
