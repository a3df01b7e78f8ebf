//! `mf record`: capture traffic into a recording.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::util::{self, human_bytes, parse_duration, parse_size};
use crate::capture::proxy::{self, Proxy, ProxyConfig, Upstream};
use crate::model::ExchangeSink;
use crate::store::{Meta, Writer, WriterConfig};

/// Record traffic into a recording file.
///
/// With --proxy, mf listens for clients and forwards every request to --upstream, recording
/// each exchange. Stop it with Ctrl-C (or SIGTERM): everything is flushed to disk and a
/// summary is printed.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  mf record --proxy --upstream http://127.0.0.1:3000 --listen 127.0.0.1:8080 -o api.db"
)]
pub struct RecordArgs {
    /// Record as a reverse proxy in front of --upstream.
    #[arg(long, conflicts_with = "interface")]
    pub proxy: bool,

    /// Record passively by sniffing this network interface (`any` for all); needs root or
    /// CAP_NET_RAW.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,

    /// With --interface: only traffic to or from this TCP port (repeatable).
    #[arg(
        long,
        value_name = "N",
        requires = "interface",
        conflicts_with = "filter"
    )]
    pub port: Vec<u16>,

    /// With --interface: only packets matching this BPF expression (tcpdump syntax).
    #[arg(long, value_name = "BPF", requires = "interface")]
    pub filter: Option<String>,

    /// The real service, e.g. http://127.0.0.1:3000 (a path prefix is kept).
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Recording file to write (appended to when it exists).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "recording.db"
    )]
    pub output: PathBuf,

    /// Bodies larger than this are forwarded whole but stored truncated (and flagged).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// Add the client address to X-Forwarded-For.
    #[arg(long)]
    pub x_forwarded_for: bool,

    /// Send the client's Host header upstream instead of the upstream's authority.
    #[arg(long)]
    pub keep_host: bool,

    /// Give up connecting to the upstream after this long (answer 504).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Give up waiting for the upstream's response head after this long (answer 504).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,
}

pub(super) fn run(args: RecordArgs) -> anyhow::Result<u8> {
    if let Some(interface) = args.interface.clone() {
        return super::sniff::run(args, interface);
    }
    if !args.proxy {
        bail!("say how to record: --proxy (with --upstream URL) or --interface IF");
    }
    let Some(upstream_url) = args.upstream.as_deref() else {
        bail!("--proxy needs --upstream URL (the service to forward to), e.g. --upstream http://127.0.0.1:3000");
    };
    let upstream = Upstream::parse(upstream_url).map_err(anyhow::Error::msg)?;
    let config = ProxyConfig {
        upstream,
        max_body: args.max_body,
        x_forwarded_for: args.x_forwarded_for,
        keep_host: args.keep_host,
        connect_timeout: args.connect_timeout,
        response_timeout: args.upstream_timeout,
        max_head: crate::decode::h1::DEFAULT_MAX_HEAD,
    };
    let meta = Meta {
        source: format!("proxy {upstream_url}"),
        command_line: util::command_line(),
    };
    let (writer, handle) = Writer::spawn(&args.output, &meta, WriterConfig::default())
        .with_context(|| format!("opening {} for recording", args.output.display()))?;
    let first_conn = handle.connection_id_base();
    let sink: Arc<dyn ExchangeSink> = Arc::new(handle);
    let proxy = Proxy::new(config, sink, first_conn);

    let rt = util::runtime()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr().context("reading the listen address")?;
        eprintln!(
            "mf: listening on {local}, proxying to {upstream_url}, recording to {} (Ctrl-C to stop)",
            args.output.display()
        );
        let (trigger, shutdown) = crate::net::shutdown_pair();
        tokio::spawn(async move {
            crate::net::termination_signal().await;
            trigger.trigger();
        });
        proxy::serve(listener, proxy.clone(), shutdown).await;
        anyhow::Ok(proxy)
    });
    // Drop the runtime (and the proxy's sink clones held by tasks) before flushing.
    drop(rt);
    let proxy = match served {
        Ok(p) => p,
        Err(e) => {
            let _ = writer.finish();
            return Err(e);
        }
    };
    let summary = writer.finish().context("flushing the recording")?;
    let s = &proxy.stats;
    eprintln!(
        "mf: recorded {} exchanges on {} connections ({} of bodies, {} upstream errors, {} bad requests) to {}",
        summary.exchanges,
        s.connections.load(Ordering::Relaxed),
        human_bytes(summary.body_bytes),
        s.upstream_errors.load(Ordering::Relaxed),
        s.bad_requests.load(Ordering::Relaxed),
        summary.path.display()
    );
    if summary.failed > 0 {
        bail!(
            "{} exchanges could not be written (see the log above)",
            summary.failed
        );
    }
    Ok(0)
}
