//! `mf generate`: man pages and shell completions from the clap definitions (hidden).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory, Subcommand};

use super::Cli;

/// Generate man pages or shell completions.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    #[command(subcommand)]
    pub(crate) what: What,
}

/// What to generate.
#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// Man pages (mf.1 and mf-SUBCOMMAND.1) into DIR.
    Man {
        #[arg(value_name = "DIR", default_value = "man")]
        dir: PathBuf,
    },
    /// A completion script on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A synthetic CRUD recording of N exchanges (for benchmarks).
    SyntheticRecording {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[arg(long, value_name = "N", default_value_t = 1_000_000)]
        exchanges: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

pub(super) fn run(args: GenerateArgs) -> anyhow::Result<u8> {
    match args.what {
        What::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, page) in man_pages()? {
                let path = dir.join(name);
                std::fs::write(&path, page)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        What::Completions { shell } => {
            // Into memory first: the generator panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mf", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script)?;
        }
        What::SyntheticRecording {
            output,
            exchanges,
            seed,
        } => return super::synthetic::run(&output, exchanges, seed),
    }
    Ok(0)
}

/// Every man page as (file name, troff text): `mf.1` and one per visible subcommand.
///
/// # Errors
/// Rendering failed (it writes to memory, so only on a clap bug).
pub(crate) fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command();
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    pages.push(("mf.1".to_string(), buf));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("mf-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub).render(&mut buf)?;
        pages.push((format!("{name}.1"), buf));
    }
    Ok(pages)
}
