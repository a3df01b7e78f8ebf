//! `mf replay FILE|DIR --upstream URL`: requests the recording (or fixtures folder) does not
//! answer are forwarded to the upstream by the recording proxy (`capture::forward`), and what
//! it answers is kept — appended to the recording through the same batched writer `mf record`
//! uses, or written as a new endpoint of the fixtures folder — and served by the running
//! replay from then on (the replay's miss hook, `replay::miss`). Only this file knows both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::util;
use crate::capture::forward::{ForwardRequest, Forwarded, Forwarder};
use crate::capture::proxy::{Http2Policy, ProxyConfig, Upstream};
use crate::infer::{path_of, Analyzer, InferConfig, TemplateBuilder};
use crate::model::{Exchange, ExchangeSink};
use crate::replay::miss::{MissAnswer, MissFuture, MissHook, MissRequest};
use crate::store::{fixtures, Meta, Writer, WriterConfig, WriterSummary};

/// The miss hook over the forwarder.
struct ForwardOnMiss(Forwarder);

impl MissHook for ForwardOnMiss {
    fn on_miss<'a>(&'a self, req: MissRequest<'a>) -> MissFuture<'a> {
        Box::pin(async move {
            let forwarded = self
                .0
                .forward(ForwardRequest {
                    method: req.method,
                    target: req.target,
                    headers: req.headers,
                    body: req.body,
                    http2: req.grpc,
                })
                .await;
            match forwarded {
                Forwarded::Stored(ex) => {
                    tracing::info!(
                        method = req.method,
                        target = req.target,
                        "answered by the upstream and kept"
                    );
                    MissAnswer::Kept(ex)
                }
                Forwarded::Failed(response) => {
                    tracing::warn!(
                        method = req.method,
                        target = req.target,
                        status = response.status,
                        "the upstream did not answer a request the replay could not"
                    );
                    MissAnswer::Failed(response)
                }
            }
        })
    }
}

/// Where kept exchanges go, to be flushed at the end.
pub(super) enum Keeper {
    /// Appended to the recording by the batched writer.
    Recording(Writer),
    /// Written as endpoints of a fixtures folder (at once, one file per endpoint).
    Fixtures(Arc<FixtureWriter>),
}

impl Keeper {
    /// Flushes what was kept and says so; the exit code (3 when something was not stored).
    pub(super) fn finish(self, target: &Path) -> anyhow::Result<u8> {
        match self {
            Keeper::Recording(writer) => {
                let summary: WriterSummary = writer.finish().context("flushing the recording")?;
                if summary.exchanges > 0 {
                    eprintln!(
                        "mf: appended {} exchanges answered by the upstream to {}",
                        summary.exchanges,
                        target.display()
                    );
                }
                Ok(util::not_stored_exit(&summary))
            }
            Keeper::Fixtures(writer) => {
                let (written, failed) = writer.counts();
                if written > 0 {
                    eprintln!(
                        "mf: wrote {written} new endpoints answered by the upstream to {}",
                        target.display()
                    );
                }
                if failed > 0 {
                    eprintln!("mf: error: {failed} answers of the upstream could not be written to {} (see above)", target.display());
                    return Ok(util::EXIT_NOT_STORED);
                }
                Ok(0)
            }
        }
    }
}

/// The forwarding settings: the upstream at `url`, for https the public roots
/// plus what `trust` adds (`--upstream-ca`, `--insecure`).
fn proxy_config(url: &str, trust: &crate::tls::UpstreamTls) -> anyhow::Result<ProxyConfig> {
    let upstream = Upstream::parse(url).map_err(anyhow::Error::msg)?;
    let tls = crate::tls::client_config(trust, &crate::tls::ALPN_H1)
        .context("setting up TLS for the upstream")?;
    let tls_h2 = crate::tls::client_config(trust, &crate::tls::ALPN_H2_H1)
        .context("setting up TLS for the upstream")?;
    Ok(ProxyConfig {
        upstream: Some(upstream),
        upstream_tls: tls,
        upstream_tls_h2: tls_h2,
        // HTTP/1 requests go as HTTP/1.1; gRPC calls (forwarded over HTTP/2) as HTTP/2,
        // learned per upstream as the recording proxy does.
        upstream_http2: Http2Policy::Auto,
        intercept_tls: None,
        passthrough: Vec::new(),
        // The replay serves what it keeps: a truncated body would be served truncated.
        max_body: 64 << 20,
        x_forwarded_for: false,
        keep_host: false,
        connect_timeout: std::time::Duration::from_secs(10),
        response_timeout: std::time::Duration::from_secs(60),
        max_head: crate::decode::h1::DEFAULT_MAX_HEAD,
        client_timeouts: crate::net::ClientTimeouts::default(),
        threads: 0,
    })
}

/// The miss hook forwarding to `url`, keeping answers in `target` (a recording, or a
/// fixtures folder when `fixtures_dir`), and what to flush at the end.
pub(super) fn hook(
    url: &str,
    trust: &crate::tls::UpstreamTls,
    target: &Path,
    fixtures_dir: bool,
) -> anyhow::Result<(Arc<dyn MissHook>, Keeper)> {
    let config = proxy_config(url, trust).with_context(|| format!("--upstream {url}"))?;
    let (store, first_connection, keeper): (Arc<dyn ExchangeSink>, u64, Keeper) = if fixtures_dir {
        let writer = Arc::new(FixtureWriter::new(target));
        (writer.clone(), 1, Keeper::Fixtures(writer))
    } else {
        let meta = Meta {
            source: format!("replay misses answered by {url}"),
            command_line: util::command_line(),
            ..Meta::default()
        };
        let (writer, handle) = Writer::spawn(target, &meta, WriterConfig::default())
            .with_context(|| format!("opening {} to append to", target.display()))?;
        let first = handle.connection_id_base();
        // What is appended follows the capture policy's defaults: secrets redacted.
        let policy = crate::capture::policy::PolicySink::new(
            Arc::new(handle),
            &crate::capture::policy::PolicyConfig::default(),
        )?;
        (Arc::new(policy), first, Keeper::Recording(writer))
    };
    let forwarder = Forwarder::new(config, store, first_connection);
    Ok((Arc::new(ForwardOnMiss(forwarder)), keeper))
}

/// Writes each kept exchange as a new endpoint of a fixtures folder, inferred (and redacted)
/// by the same code as `mf infer`.
pub(super) struct FixtureWriter {
    dir: PathBuf,
    /// (written, failed); the lock also keeps two endpoints from taking one name.
    counts: Mutex<(u64, u64)>,
}

impl FixtureWriter {
    fn new(dir: &Path) -> FixtureWriter {
        FixtureWriter {
            dir: dir.to_path_buf(),
            counts: Mutex::new((0, 0)),
        }
    }

    fn counts(&self) -> (u64, u64) {
        self.counts.lock().map_or((0, 0), |c| *c)
    }

    fn write(&self, ex: &Exchange) -> anyhow::Result<String> {
        let mut templates = TemplateBuilder::default();
        templates.add(&ex.request.method, path_of(&ex.request.target));
        let mut analyzer = Analyzer::new(templates.finish(), InferConfig::default());
        analyzer.add(ex);
        let inferred = analyzer.finish()?;
        let entry = inferred
            .set
            .index
            .endpoints
            .first()
            .context("inference found no endpoint in the exchange")?;
        // The redacted files, not the set: no secret of the request may reach the folder.
        let text = inferred
            .files
            .get(&entry.file)
            .context("inference wrote no endpoint file")?;
        let endpoint: fixtures::Endpoint = serde_norway::from_slice(text)
            .with_context(|| format!("reading back {}", entry.file))?;
        let prefix = format!("bodies/{}/", entry.name);
        let bodies = inferred
            .files
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(fixtures::add_endpoint(&self.dir, endpoint, bodies, 1)?)
    }
}

impl ExchangeSink for FixtureWriter {
    fn record(&self, exchange: Box<Exchange>) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        match self.write(&exchange) {
            Ok(file) => {
                counts.0 += 1;
                tracing::info!(file, "new fixture from the upstream");
            }
            Err(e) => {
                counts.1 += 1;
                tracing::error!(
                    "could not write the upstream's answer to {} into {}: {}",
                    exchange.request.target,
                    self.dir.display(),
                    super::error_text(&e)
                );
            }
        }
    }
}
