//! `mf infer`: a recording in, a fixtures folder out.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::util;
use crate::infer::{path_of, Analyzer, InferConfig, TemplateBuilder};
use crate::model::Exchange;
use crate::store::fixtures;

/// Infer endpoint templates, schemas, sequence patterns and fixtures from a recording.
///
/// Writes a deterministic fixtures folder (one YAML file per endpoint template with matchers
/// and examples, bodies in their own files, sequences.yaml, openapi.yaml, index.yaml) that
/// `mf replay DIR` serves. Secrets are redacted by default. Patterns are also stored in the
/// recording (see `mf patterns`).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  mf infer api.db -o fixtures/api")]
pub(crate) struct InferArgs {
    /// The recording to read.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// Folder to write the fixtures into (replaced when it already holds fixtures).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "fixtures"
    )]
    pub(crate) output: PathBuf,

    /// Also redact this header, query parameter or JSON field (repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) redact: Vec<String>,

    /// Write secrets as recorded (never for fixtures that leave your machine).
    #[arg(long, conflicts_with = "redact")]
    pub(crate) no_redact: bool,

    /// Representative examples kept per endpoint.
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub(crate) examples: usize,
}

pub(super) fn run(args: InferArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let what = || format!("reading {}", args.recording.display());
    let total = reader.count().with_context(what)?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(total * 2)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let config = InferConfig {
        redact: !args.no_redact,
        extra_redact: args.redact.clone(),
        max_examples: args.examples,
    };
    let inferred = analyse(&args.recording, reader, config, &bar)?;
    bar.finish_and_clear();
    fixtures::write_dir(&args.output, &inferred.files)
        .with_context(|| format!("writing fixtures to {}", args.output.display()))?;
    // The fixtures are the product; a read-only recording only loses `mf patterns`.
    let stored = crate::store::open_existing_writer(&args.recording)
        .and_then(|mut w| w.replace_patterns(&inferred.patterns));
    if let Err(e) = stored {
        eprintln!(
            "mf: warning: could not store patterns in {}: {e}",
            args.recording.display()
        );
    }

    let set = &inferred.set;
    eprintln!(
        "mf: {} exchanges → {} endpoints, {} patterns, {} files in {}",
        set.index.exchanges,
        set.endpoints.len(),
        inferred.patterns.len(),
        inferred.files.len(),
        args.output.display()
    );
    if args.no_redact {
        eprintln!("mf: redaction is OFF: the fixtures may contain secrets");
    } else if inferred.redactions.is_empty() {
        eprintln!("mf: redacted nothing (no secrets found in the examples)");
    } else {
        for (what, n) in &inferred.redactions {
            eprintln!("mf: redacted {what} ({n}×)");
        }
    }
    Ok(0)
}

/// Both passes of inference over the recording `reader` reads (at `path`, for messages),
/// with progress on `bar`: what `mf infer` writes out and the viewer's endpoints page shows.
///
/// # Errors
/// Reading the recording failed, or the fixtures could not be built.
pub(super) fn analyse(
    path: &std::path::Path,
    reader: Box<dyn crate::store::RecordingRead>,
    config: InferConfig,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<crate::infer::Inferred> {
    let what = || format!("reading {}", path.display());
    bar.set_message("templates");
    let mut builder = TemplateBuilder::default();
    reader
        .for_each_target(&mut |method, target| {
            builder.add(method, path_of(target));
            bar.inc(1);
        })
        .with_context(what)?;
    let mut analyzer = Analyzer::new(builder.finish(), config);
    bar.set_message("analysing");
    // Reading (SQLite, zstd, header decoding) and analysis each take about half the time: a
    // reader thread feeding a bounded channel uses the second core and keeps memory flat.
    // Batches, so that the two threads meet every few hundred exchanges, not every one; an
    // analysed batch goes back to the reader, whose walk refills its exchanges in place.
    // (Two readers, each on every other run of ids, were slower on 2 cores: 12.8–13.2 s
    // against 11 s, their walks together taking 40% more CPU than one.)
    const BATCH: usize = 256;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Exchange>>(8);
    let (back, returned) = std::sync::mpsc::channel::<Vec<Exchange>>();
    let read = std::thread::spawn(move || -> Result<(), crate::store::StoreError> {
        let mut batch = Vec::with_capacity(BATCH);
        let mut spare: Vec<Exchange> = Vec::new();
        reader.scan(&mut |ex| {
            if spare.is_empty() {
                spare = returned.try_recv().unwrap_or_default();
            }
            let mut slot = spare.pop().unwrap_or_default();
            std::mem::swap(&mut slot, ex);
            batch.push(slot);
            batch.len() < BATCH
                || tx
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_ok()
        })?;
        if !batch.is_empty() {
            let _ = tx.send(batch);
        }
        Ok(())
    });
    for batch in rx {
        for ex in &batch {
            analyzer.add(ex);
        }
        bar.inc(batch.len() as u64);
        // The reader may be done already: then the batch is simply dropped.
        let _ = back.send(batch);
    }
    match read.join() {
        Ok(result) => result.with_context(what)?,
        Err(_) => anyhow::bail!("the reader thread failed"),
    }
    analyzer.finish().context("building fixtures")
}
