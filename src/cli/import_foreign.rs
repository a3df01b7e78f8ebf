//! `mf import` of other tools' recordings (HAR, mitmproxy flows): each file is parsed whole
//! before the recording is opened, so a broken file leaves no recording behind (or the
//! existing one unchanged); the exchanges then go to the recording through the same batched
//! writer as those decoded from packet captures.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::util;
use crate::capture::foreign::ForeignFormat;
use crate::model::{Exchange, ExchangeSink};
use crate::store::{Meta, WriterConfig};

/// A file read whole: its name, format and exchanges.
pub(super) struct ForeignFile {
    name: String,
    format: ForeignFormat,
    exchanges: Vec<Exchange>,
}

/// Splits `files` into foreign recordings (read and parsed now) and packet captures (left
/// for the capture reader, which refuses what is neither).
///
/// # Errors
/// A file that cannot be read, or a foreign file that is broken (with where).
pub(super) fn split(files: &[PathBuf]) -> anyhow::Result<(Vec<ForeignFile>, Vec<PathBuf>)> {
    let mut foreign = Vec::new();
    let mut captures = Vec::new();
    for path in files {
        let mut head = [0u8; 64];
        let n = read_head(path, &mut head)?;
        match ForeignFormat::detect(&head[..n]) {
            Some(format) => {
                let data =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let exchanges = format.read(&data).with_context(|| {
                    format!("importing {} ({} file)", path.display(), format.name())
                })?;
                foreign.push(ForeignFile {
                    name: path.display().to_string(),
                    format,
                    exchanges,
                });
            }
            None => captures.push(path.clone()),
        }
    }
    Ok((foreign, captures))
}

fn read_head(path: &Path, buf: &mut [u8]) -> anyhow::Result<usize> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read(&mut buf[filled..])
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Stores every exchange of `files` in the recording at `output` (appended to when it
/// exists) and prints one summary line per file.
///
/// # Errors
/// The recording cannot be opened or written.
pub(super) fn write(
    output: &Path,
    files: Vec<ForeignFile>,
    policy: &super::policy::PolicyArgs,
) -> anyhow::Result<()> {
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let meta = Meta {
        source: format!("import {}", names.join(" ")),
        command_line: util::command_line(),
        ..Meta::default()
    };
    // The same capture policy as every other way of recording (redaction, filters, dedup).
    let super::policy::Recording {
        writer,
        sink: policy,
        first_connection,
    } = policy.open_recording(output, &meta, WriterConfig::blocking())?;
    // Connection ids stay unique across files and with what the recording already holds.
    let mut base = first_connection;
    let sink: Arc<dyn ExchangeSink> = policy.clone();
    let mut lines = Vec::new();
    for file in files {
        let count = file.exchanges.len();
        let mut top = base;
        for mut ex in file.exchanges {
            ex.connection_id += base;
            top = top.max(ex.connection_id);
            sink.record(Box::new(ex));
        }
        base = top + 1;
        lines.push(format!(
            "mf: {count} exchanges from {} file {}",
            file.format.name(),
            file.name
        ));
    }
    drop(sink);
    policy.finish();
    let summary = writer.finish().context("flushing the recording")?;
    for line in lines {
        eprintln!("{line} to {}", summary.path.display());
    }
    eprintln!("mf: capture policy: {}", policy.summary());
    if summary.failed > 0 {
        bail!(
            "{} exchanges could not be written (see the log above)",
            summary.failed
        );
    }
    Ok(())
}
