//! The command line: one file per subcommand. Arguments are validated here into plain stage
//! configs; only this module wires stages together.
//!
//! Imports: everything below it.

mod ca;
mod copy;
mod ctl;
mod diagram;
mod diff;
mod export;
mod generate;
mod import;
mod import_foreign;
mod infer;
mod ls;
mod patterns;
mod policy;
mod prune;
mod record;
mod record_on_miss;
mod replay;
mod replay_fixtures;
mod replay_to;
mod select;
mod show;
mod sniff;
mod sql;
mod stats;
mod synthetic;
mod ui;
pub(crate) mod util;

use clap::{Parser, Subcommand};

/// Record real API traffic and replay it, deterministically.
///
/// mf sits between a client and a real service, records every exchange into one compressed
/// SQLite file, and serves the recording back when the service is gone.
#[derive(Debug, Parser)]
#[command(name = "mf", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    /// More log output (-v: info, -vv: debug, -vvv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Record(record::RecordArgs),
    Import(import::ImportArgs),
    Replay(replay::ReplayArgs),
    Ls(ls::LsArgs),
    Stats(stats::StatsArgs),
    Prune(prune::PruneArgs),
    Sql(sql::SqlArgs),
    Show(show::ShowArgs),
    Ctl(ctl::CtlArgs),
    Export(export::ExportArgs),
    Copy(copy::CopyArgs),
    Ca(ca::CaArgs),
    Infer(infer::InferArgs),
    Patterns(patterns::PatternsArgs),
    Diff(diff::DiffArgs),
    Ui(ui::UiArgs),
    Diagram(diagram::DiagramArgs),
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// Parses the command line and runs it. Returns the exit code for success paths
/// (0, or 1 when a command ran but found a mismatch).
///
/// # Errors
/// Anything that stops the command; `main` prints it and exits with 2.
pub fn run() -> anyhow::Result<u8> {
    // Passwords in database URLs leave the arguments before anything can print them.
    let args = std::env::args_os().map(|a| match a.to_str() {
        Some(s) => std::ffi::OsString::from(crate::store::hide_password(s)),
        None => a,
    });
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout and usage errors to stderr.
            let _ = e.print();
            return Ok(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Import(args) => import::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Ls(args) => ls::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Show(args) => show::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Export(args) => export::run(args),
        Command::Copy(args) => copy::run(args),
        Command::Ca(args) => ca::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Patterns(args) => patterns::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Ui(args) => ui::run(args),
        Command::Diagram(args) => diagram::run(args),
        Command::Generate(args) => generate::run(args),
    }
}

/// True when `err` is a write to a closed stdout (`mf ls rec.db | head -1`): the reader chose
/// to stop, so the command succeeded. Decided here, once, for every printing command.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let kind = if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            Some(e.kind())
        } else {
            // serde_json wraps the writer's error in its own type.
            cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The one line `mf: error: …` says: each cause once. Library errors often quote their source
/// in their own message (`reading x: No such file (os error 2)`) and also return it as
/// `source()`; printing the chain as is repeated the cause.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Raises the soft open-file limit to the hard limit: every client connection is a
/// descriptor (two through the proxy), and the inherited soft limit (often 1024) made
/// ~1,000 slow clients enough to stop mf from accepting anyone.
pub fn raise_fd_limit() {
    #[cfg(unix)]
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(error = %e, "could not raise the open-file limit");
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "mf=warn",
        1 => "mf=info",
        2 => "mf=debug",
        _ => "mf=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file (os error 2)");
        let err = anyhow::Error::new(io).context("reading x.pem: No such file (os error 2)");
        assert_eq!(error_text(&err), "reading x.pem: No such file (os error 2)");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io).context("opening y");
        assert_eq!(error_text(&err), "opening y: gone");
    }
}
