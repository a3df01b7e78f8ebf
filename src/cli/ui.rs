//! `mf ui`: the browser viewer of a recording or a fixtures folder; and the same pages for
//! `mf replay --admin` (with the control center).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use super::util;
use crate::infer::InferConfig;
use crate::net::pages::Pages;
use crate::store::fixtures;
use crate::ui::Viewer;

/// Look at a recording (or a fixtures folder) in the browser.
///
/// The exchanges as a paged list with the filters of `mf ls`, each in full (heads, bodies,
/// timing, gRPC messages and WebSocket frames on a timeline, copy as curl), the inferred
/// endpoints and patterns, and sequence diagrams. Nothing is loaded from the network: the
/// pages and their script are in the binary. `mf replay --admin ADDR` serves the same pages
/// at `/` of its admin port, with a control center.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  mf ui api.db            # then open http://127.0.0.1:8081/")]
pub(crate) struct UiArgs {
    /// The recording, or a fixtures folder written by `mf infer`.
    #[arg(value_name = "FILE|DIR")]
    pub(crate) recording: PathBuf,

    /// Address to serve the pages on (loopback only: recordings hold credentials).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8081")]
    pub(crate) listen: String,
}

pub(super) fn run(args: UiArgs) -> anyhow::Result<u8> {
    let addr: std::net::SocketAddr = args
        .listen
        .parse()
        .with_context(|| format!("--listen {}: expected IP:PORT", args.listen))?;
    if !addr.ip().is_loopback() {
        bail!(
            "--listen {addr}: the viewer shows recorded requests as they are, credentials \
             included; it listens on loopback only (use an SSH tunnel to look from elsewhere)"
        );
    }
    let pages = viewer(&args.recording, false)?;
    let rt = util::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener
            .local_addr()
            .context("reading the listen address")?;
        let stop = crate::net::termination_signal();
        eprintln!(
            "mf: viewer listening on {local} (open http://{local}/ in a browser; Ctrl-C to stop)"
        );
        let (trigger, shutdown) = crate::net::shutdown_pair();
        tokio::spawn(async move {
            stop.await;
            trigger.trigger();
        });
        crate::net::pages::serve(listener, pages, shutdown).await;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// The pages over `path` (a recording or a fixtures folder); `control` adds the control
/// center of a replay served beside them. Inference runs on the first visit of the
/// endpoints page, on a reader of its own.
///
/// # Errors
/// `path` is neither a readable recording nor a fixtures folder.
pub(super) fn viewer(path: &Path, control: bool) -> anyhow::Result<Arc<dyn Pages>> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if path.is_dir() {
        let set = fixtures::read_dir(path)
            .with_context(|| format!("reading fixtures folder {}", path.display()))?;
        let analyse = Box::new(move || Ok(set.clone()));
        return Ok(Arc::new(Viewer::new(None, name, analyse, control)));
    }
    let reader = util::open_recording(path)?;
    let file = path.to_path_buf();
    let analyse = Box::new(move || {
        let reader = util::open_recording(&file).map_err(|e| format!("{e:#}"))?;
        let config = InferConfig {
            max_examples: 1,
            ..InferConfig::default()
        };
        super::infer::analyse(&file, reader, config, &indicatif::ProgressBar::hidden())
            .map(|inferred| inferred.set)
            .map_err(|e| format!("{e:#}"))
    });
    Ok(Arc::new(Viewer::new(Some(reader), name, analyse, control)))
}
