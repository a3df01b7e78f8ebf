//! `mf record`: capture traffic into a recording.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::policy::PolicyArgs;
use super::replay::Secret;
use super::util::{self, human_bytes, parse_duration, parse_size};
use crate::capture::proxy::{self, Http2Policy, Observers, Proxy, ProxyConfig, Upstream};
use crate::model::ExchangeSink;
use crate::store::{Meta, WriterConfig};

/// Record traffic into a recording file.
///
/// With --proxy and --upstream, mf is a reverse proxy: it listens for clients and forwards
/// every request to the upstream (http:// or https://), recording each exchange. With --proxy
/// alone it is a forward proxy for clients configured with HTTP_PROXY/HTTPS_PROXY: HTTPS
/// (CONNECT) is intercepted with certificates from the local mf CA (see `mf ca`), except for
/// --passthrough hosts. Stop it with Ctrl-C (or SIGTERM): everything is flushed to disk and a
/// summary is printed.
///
/// Recording never slows the traffic: when the disk cannot keep up or a write fails (disk
/// full), exchanges are forwarded but not stored, counted and reported once; storing resumes
/// by itself when it can. Exit status: 0 when everything was stored, 2 on an error, 3 when
/// some exchanges were not stored.
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

    /// With --interface: only traffic to or from this TCP port (repeatable). VXLAN and
    /// GENEVE tunnels and IP fragments pass whole: their inner ports are not filtered.
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

    /// With --interface: a TLS key log (`SSLKEYLOGFILE`) followed while capturing, to decrypt
    /// TLS 1.2 and 1.3 connections (repeatable).
    #[arg(long, value_name = "FILE", requires = "interface")]
    pub keylog: Vec<std::path::PathBuf>,

    /// The real service, e.g. http://127.0.0.1:3000 or https://api.example.com (a path prefix
    /// is kept). Without it, mf is a forward proxy.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Trust this CA certificate (PEM) for upstreams, in addition to the public roots.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Accept any upstream certificate. Dangerous: only for test servers.
    #[arg(long)]
    pub insecure: bool,

    /// Forward proxy: relay CONNECT tunnels to these hosts without interception.
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub passthrough: Vec<String>,

    /// Listen with TLS, using a certificate minted from the mf CA.
    #[arg(long)]
    pub tls: bool,

    /// Listen with TLS using this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

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

    /// Which HTTP version to speak to upstreams: `auto` learns it per upstream (ALPN for
    /// https, a prior-knowledge probe for http) and translates HTTP/2 clients to HTTP/1.1
    /// for upstreams that speak only that; `always` speaks HTTP/2 (h2 or h2c) for HTTP/2
    /// clients; `never` speaks HTTP/1.1 to every upstream.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub upstream_http2: UpstreamHttp2,

    /// Give up connecting to the upstream after this long (answer 504).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Give up on an upstream that sends nothing for this long: before the response head
    /// (answered 504), or in the middle of a body (the client's connection is closed and the
    /// exchange recorded with what arrived and `upstream_timeout`).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Threads that serve client connections, each with its own event loop (a connection
    /// stays on one, as in an nginx worker) [default: one per CPU].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Close a client that has not sent a whole request head this long after connecting, or
    /// after the head's first byte (answered 408 once it had begun).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Close a keep-alive client connection that stays silent this long between requests, and
    /// answer 408 to a client that stops sending a request body for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    #[command(flatten)]
    pub observe: Box<ObserveArgs>,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// `--admin` and `--otlp`: who else watches the proxy's exchanges.
#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// With --proxy: serve Prometheus metrics as GET /metrics on this address (off by
    /// default), with the replay admin's Host, Origin and token checks.
    #[arg(long, value_name = "ADDR", help_heading = "Observability")]
    pub admin: Option<String>,

    /// Bearer token /metrics requires (mandatory off loopback).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MF_ADMIN_TOKEN",
        hide_env_values = true,
        help_heading = "Observability",
        value_parser = super::replay::parse_secret
    )]
    pub admin_token: Option<Secret>,

    /// Read the bearer token from this file (first line; keeps it out of `ps`).
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Observability",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<PathBuf>,

    /// With --proxy: export one OpenTelemetry span per exchange to this OTLP/HTTP collector
    /// (http://HOST:4318; `/v1/traces` is added), a child of the request's traceparent.
    #[arg(long, value_name = "URL", help_heading = "Observability")]
    pub otlp: Option<String>,
}

/// `--upstream-http2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamHttp2 {
    Auto,
    Always,
    Never,
}

impl UpstreamHttp2 {
    fn policy(self) -> Http2Policy {
        match self {
            UpstreamHttp2::Auto => Http2Policy::Auto,
            UpstreamHttp2::Always => Http2Policy::Always,
            UpstreamHttp2::Never => Http2Policy::Never,
        }
    }

    /// What the connections of HTTP/2 clients offer an https upstream in ALPN.
    fn alpn(self) -> &'static [&'static [u8]] {
        match self {
            UpstreamHttp2::Auto => &crate::tls::ALPN_H2_H1,
            UpstreamHttp2::Always => &[b"h2"],
            UpstreamHttp2::Never => &crate::tls::ALPN_H1,
        }
    }
}

pub(super) fn run(args: RecordArgs) -> anyhow::Result<u8> {
    args.policy.config().check()?;
    if args.interface.is_some() && (args.observe.admin.is_some() || args.observe.otlp.is_some()) {
        bail!("--admin and --otlp need --proxy");
    }
    if let Some(interface) = args.interface.clone() {
        return super::sniff::run(super::sniff::SniffArgs {
            interface,
            output: args.output,
            filter: args.filter,
            port: args.port,
            max_body: args.max_body,
            keylog: args.keylog,
            policy: args.policy,
        });
    }
    if !args.proxy {
        bail!("say how to record: --proxy (with --upstream URL for a reverse proxy, without for a forward proxy) or --interface IF");
    }
    let upstream = match args.upstream.as_deref() {
        Some(url) => Some(Upstream::parse(url).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let own_upstream = upstream.clone();
    let admin_token = super::replay::token_of(
        args.observe.admin_token.as_ref(),
        args.observe.admin_token_file.as_deref(),
    )?;
    let admin = super::replay::admin_addr_of(args.observe.admin.as_deref(), admin_token.as_ref())?;
    if args.insecure {
        eprintln!("mf: WARNING: --insecure: upstream certificates are NOT verified; anyone on the path can read and alter this traffic");
    }
    let upstream_trust = crate::tls::UpstreamTls {
        extra_ca: args.upstream_ca.clone(),
        insecure: args.insecure,
    };
    let upstream_tls = crate::tls::client_config(&upstream_trust, &[b"http/1.1"])
        .context("setting up TLS for upstreams")?;
    let upstream_tls_h2 = crate::tls::client_config(&upstream_trust, args.upstream_http2.alpn())
        .context("setting up TLS for upstreams")?;
    let ca_dir = crate::tls::default_ca_dir();
    let needs_ca = upstream.is_none() || (args.tls && args.tls_cert.is_none());
    let ca = if needs_ca {
        let (ca, created) = crate::tls::Ca::init(&ca_dir).context("loading the mf CA")?;
        if created {
            eprintln!(
                "mf: created the mf CA; clients must trust {}",
                crate::tls::Ca::cert_path(&ca_dir).display()
            );
        }
        Some(Arc::new(ca))
    } else {
        None
    };
    // Intercepted tunnels offer h2 and http/1.1, so that the client picks what it would
    // pick with the real host (a gRPC client offers only h2); whatever the tunnel's host
    // speaks, the HTTP/2 driver translates.
    let intercept_tls = match (&upstream, &ca) {
        (None, Some(ca)) => Some(crate::tls::minting_server_config(
            ca.clone(),
            "localhost",
            &crate::tls::ALPN_H2_H1,
        )),
        _ => None,
    };
    let source = match &args.upstream {
        Some(url) => format!("proxy {url}"),
        None => "forward proxy".to_string(),
    };
    let config = ProxyConfig {
        upstream,
        upstream_tls,
        upstream_tls_h2,
        upstream_http2: args.upstream_http2.policy(),
        intercept_tls,
        passthrough: args.passthrough.clone(),
        max_body: args.max_body,
        x_forwarded_for: args.x_forwarded_for,
        keep_host: args.keep_host,
        connect_timeout: args.connect_timeout,
        response_timeout: args.upstream_timeout,
        max_head: crate::decode::h1::DEFAULT_MAX_HEAD,
        client_timeouts: crate::net::ClientTimeouts {
            header: args.header_timeout,
            idle: args.idle_timeout,
        },
        threads: args.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            usize::from,
        ),
    };
    // A TLS listener offers clients h2 when the upstream speaks it (probed once, now), so
    // that clients speak to mf what they would speak to the upstream.
    let offer_h2 = match (&config.upstream, args.tls || args.tls_cert.is_some()) {
        (Some(up), true) => match args.upstream_http2 {
            UpstreamHttp2::Always => true,
            UpstreamHttp2::Never => false,
            UpstreamHttp2::Auto => {
                util::runtime()?.block_on(proxy::upstream_speaks_h2(&config, up))
            }
        },
        _ => false,
    };
    let listener_tls = super::util::listener_tls(
        args.tls,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        ca.clone(),
        if offer_h2 {
            &crate::tls::ALPN_H2_H1
        } else {
            &crate::tls::ALPN_H1
        },
    )?;
    let meta = Meta {
        source,
        command_line: util::command_line(),
        ..Meta::default()
    };
    // Live: the request path never waits on disk; a full queue drops and counts.
    let super::policy::Recording {
        writer,
        sink: policy,
        first_connection: first_conn,
    } = args
        .policy
        .open_recording(&args.output, &meta, WriterConfig::default())?;
    let sink: Arc<dyn ExchangeSink> = policy.clone();
    let proxy = Proxy::new(config, sink, first_conn);
    let warning = args.policy.start_line_warning();

    let rt = util::runtime()?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener
            .local_addr()
            .context("reading the listen address")?;
        // A reverse proxy whose upstream is itself forwards every request to itself until it
        // runs out of descriptors (seen when the upstream's port was free and the listener
        // was given it): refuse before serving anyone.
        if let Some(up) = &own_upstream {
            let up_addrs = tokio::net::lookup_host((up.host.as_str(), up.port))
                .await
                .map(|a| a.collect::<Vec<_>>())
                .unwrap_or_default();
            let loops = up_addrs.iter().any(|a| {
                a.port() == local.port()
                    && (a.ip() == local.ip() || local.ip().is_unspecified() && a.ip().is_loopback())
            });
            if loops {
                bail!(
                    "--upstream {} is this proxy's own address ({local}): it would forward every request to itself",
                    up.authority
                );
            }
        }
        let (trigger, shutdown) = crate::net::shutdown_pair();
        let exporter = observe(
            &proxy,
            admin,
            admin_token,
            args.observe.otlp.as_deref(),
            &shutdown,
        ).await?;
        // Before the announcement: a Ctrl-C right after it must stop cleanly.
        let stop = crate::net::termination_signal();
        eprintln!(
            "mf: listening on {local}{}, {}, recording to {} (Ctrl-C to stop){warning}",
            if listener_tls.is_some() { " (TLS)" } else { "" },
            match &args.upstream {
                Some(url) => format!("proxying to {url}"),
                None => "forward proxy (set HTTP_PROXY/HTTPS_PROXY to it)".to_string(),
            },
            args.output.display()
        );
        tokio::spawn(async move {
            stop.await;
            trigger.trigger();
        });
        proxy::serve(listener, proxy.clone(), shutdown, listener_tls).await;
        if let Some(e) = exporter {
            e.flush(Duration::from_secs(2)).await;
        }
        anyhow::Ok(proxy)
    });
    // Drop the runtime (and the proxy's sink clones held by tasks) before flushing.
    drop(rt);
    policy.finish();
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
        "mf: recorded {} exchanges{} on {} connections ({} of bodies, {} upstream errors, {} bad requests) to {}",
        summary.exchanges,
        match summary.not_stored() {
            0 => String::new(),
            n => format!(" ({n} more forwarded but not stored)"),
        },
        s.connections.load(Ordering::Relaxed),
        human_bytes(summary.body_bytes),
        s.upstream_errors.load(Ordering::Relaxed),
        s.bad_requests.load(Ordering::Relaxed),
        summary.path.display()
    );
    eprintln!("mf: capture policy: {}", policy.summary());
    Ok(super::util::not_stored_exit(&summary))
}

/// `--admin` and `--otlp`: the proxy's metrics on their own listener, and its span exporter
/// (returned, to be flushed at the end).
async fn observe(
    proxy: &Proxy,
    admin: Option<std::net::SocketAddr>,
    token: Option<Secret>,
    otlp: Option<&str>,
    shutdown: &crate::net::Shutdown,
) -> anyhow::Result<Option<Arc<crate::net::otlp::Exporter>>> {
    if admin.is_none() && otlp.is_none() {
        return Ok(None);
    }
    let metrics = Arc::new(crate::net::metrics::Metrics::new().context("setting up metrics")?);
    let spans = match otlp {
        Some(url) => Some(crate::net::otlp::Exporter::start(
            url,
            "mf record",
            &metrics,
        )?),
        None => None,
    };
    if let Some(addr) = admin {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --admin {addr}"))?;
        let addr = l.local_addr().context("reading the admin address")?;
        eprintln!("mf: metrics at http://{addr}/metrics");
        tokio::spawn(crate::net::admin::serve_metrics(
            l,
            metrics.clone(),
            token.map(|t| t.expose().to_string()),
            shutdown.clone(),
        ));
    }
    proxy.set_observers(Observers {
        metrics: admin.map(|_| metrics),
        spans: spans.clone(),
    });
    Ok(spans)
}
