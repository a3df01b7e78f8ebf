//! The capture-policy flags, defined once and flattened into `mf record` (proxy and
//! `--interface`) and `mf import`.

use std::sync::Arc;

use clap::Args;

use crate::capture::policy::{FilterConfig, PolicyConfig, PolicySink, SampleConfig};

/// What a recording keeps: filters, sampling, dedup and redaction of secrets.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "What is stored")]
pub struct PolicyArgs {
    /// Store only exchanges whose path matches this glob (repeatable; `*` crosses `/`).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Do not store exchanges whose path matches this glob (repeatable), e.g. `/health`.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Store only exchanges addressed to this host (glob, port optional; repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,

    /// Store only requests with this method (repeatable or comma-separated).
    #[arg(long = "method", value_name = "METHOD", value_delimiter = ',')]
    pub methods: Vec<String>,

    /// Store only exchanges whose request or response media type matches this glob
    /// (repeatable), e.g. `application/json`.
    #[arg(long = "content-type", value_name = "GLOB")]
    pub content_types: Vec<String>,

    /// Store this fraction of the exchanges, e.g. 0.1 (random per exchange, or per client
    /// with --sample-by).
    #[arg(long, value_name = "FRACTION")]
    pub sample: Option<f64>,

    /// With --sample: decide by a hash of this request header's value, so that each client
    /// (API key, session) is kept or dropped whole, the same in every recording.
    #[arg(long, value_name = "HEADER", requires = "sample")]
    pub sample_by: Option<String>,

    /// Store at most N exchanges per identical request and response (headers aside); the
    /// last kept one gets a `dedup_dropped` tag counting the rest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub dedup: Option<u64>,

    /// Also redact this header, query/form/multipart parameter or JSON field (any depth), or
    /// JSON path like `$.user.ssn` (repeatable).
    #[arg(long, value_name = "NAME")]
    pub redact: Vec<String>,

    /// Store credentials and secret fields as sent instead of as `mf-redacted-…`
    /// placeholders. Anyone with the recording can then use them.
    #[arg(long)]
    pub keep_secrets: bool,

    /// The name kept with each exchange in a shared (PostgreSQL) recording, telling recorders
    /// apart (default: this machine's host name).
    #[arg(long, value_name = "NAME")]
    pub recorder: Option<String>,
}

/// A recording opened through the capture policy (see [`PolicyArgs::open_recording`]).
pub(super) struct Recording {
    pub writer: crate::store::Writer,
    pub sink: Arc<PolicySink>,
    pub first_connection: u64,
}

/// The loud part of a start line when secrets are kept.
pub(super) const KEEP_SECRETS_WARNING: &str =
    "WARNING: --keep-secrets: credentials are stored as sent";

impl PolicyArgs {
    /// The policy these flags ask for.
    pub(super) fn config(&self) -> PolicyConfig {
        PolicyConfig {
            filter: FilterConfig {
                include: self.include.clone(),
                exclude: self.exclude.clone(),
                hosts: self.hosts.clone(),
                methods: self.methods.clone(),
                content_types: self.content_types.clone(),
            },
            sample: self.sample.map(|rate| SampleConfig {
                rate,
                by: self.sample_by.clone(),
            }),
            dedup: self.dedup.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            keep_secrets: self.keep_secrets,
            redact: self.redact.clone(),
        }
    }

    /// Opens `output` for recording through this policy: the writer (to finish at the
    /// end), the policy sink every exchange goes to, and the first free connection id.
    /// The one way every recording command starts storing.
    pub(super) fn open_recording(
        &self,
        output: &std::path::Path,
        meta: &crate::store::Meta,
        config: crate::store::WriterConfig,
    ) -> anyhow::Result<Recording> {
        use anyhow::Context;
        let meta = crate::store::Meta {
            recorder: self.recorder.clone().unwrap_or_default(),
            ..meta.clone()
        };
        let (writer, handle) =
            crate::store::Writer::spawn(output, &meta, config).with_context(|| {
                format!(
                    "opening {} for recording",
                    crate::store::display_location(output)
                )
            })?;
        let first_connection = handle.connection_id_base();
        match PolicySink::new(Arc::new(handle), &self.config()) {
            Ok(sink) => Ok(Recording {
                writer,
                sink: Arc::new(sink),
                first_connection,
            }),
            Err(e) => {
                let _ = writer.finish();
                Err(e.into())
            }
        }
    }

    /// `" — WARNING: …"` for a start line when secrets are kept, else nothing.
    pub(super) fn start_line_warning(&self) -> String {
        if self.keep_secrets {
            format!(" — {KEEP_SECRETS_WARNING}")
        } else {
            String::new()
        }
    }
}
