//! The `mf` binary: parse arguments, run, decide the exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match mf::cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // A closed pipe (`mf ls rec.db | head`) is the reader's choice, not our failure.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("mf: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
