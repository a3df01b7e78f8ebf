//! The `mf` binary: parse arguments, run, decide the exit code.

use std::process::ExitCode;

// glibc malloc showed as ~15% of the recording proxy's profile under load; mimalloc halves it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mf::cli::raise_fd_limit();
    match mf::cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if mf::cli::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("mf: error: {}", mf::cli::error_text(&err));
            ExitCode::from(2)
        }
    }
}
