//! The PostgreSQL backend: one recording shared by many recorders and replays.
//!
//! A database holds any number of recordings, one schema each (`mf_<name>`, from the URL's
//! `recording=` parameter), with the tables of a recording file: exchanges (plus the name of
//! the recorder that stored each one), stream messages, content-addressed zstd blobs shared by
//! every recorder (inserted with `ON CONFLICT DO NOTHING`), metadata and patterns. Each writer
//! takes a block of 2^32 connection ids from a sequence when it opens, so recorders appending
//! at the same time never share a connection id.
//!
//! Files: `location` (URL, recording name, credentials), `schema` (versions and forward
//! migrations), `write` (batches of `COPY` and multi-row inserts, one transaction each), `read`
//! (paged reads, bodies joined in), `select` (the one [`Selection`](crate::store::Selection)
//! in PostgreSQL's dialect).

mod location;
mod read;
mod schema;
mod select;
mod write;

use std::sync::Arc;

use postgres::config::SslMode;
use postgres::{Client, NoTls};

pub(crate) use location::{hide_password, is_postgres_url, redact, PgLocation};
pub(crate) use read::PgReader;
pub(crate) use write::host_name;
pub(crate) use write::PgWriter;

use super::StoreError;

/// Runs `f` where the client library may block: the library drives its own runtime, which
/// cannot start inside another, so a caller on an async thread gets a thread of its own.
fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Connects to the database of `loc` (TLS as its `sslmode` says) and points the session at the
/// recording's schema.
fn connect(loc: &PgLocation) -> Result<Client, StoreError> {
    outside_runtime(|| connect_here(loc))
}

fn connect_here(loc: &PgLocation) -> Result<Client, StoreError> {
    let mut client = match loc.config.get_ssl_mode() {
        SslMode::Disable => loc.config.connect(NoTls)?,
        _ => loc
            .config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                loc,
            )?))?,
    };
    client.batch_execute(&format!("SET search_path TO {}", loc.schema()))?;
    Ok(client)
}

/// The public web roots plus `sslrootcert`, over ring.
fn tls_config(loc: &PgLocation) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |reason: String| StoreError::BadLocation {
        location: loc.display.clone(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &loc.root_cert {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What went wrong, with the server's own words (the library's `Display` says only "db
/// error" and keeps the rest in its source, which log lines do not print).
pub(crate) fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.to_string().replace('\n', "; ");
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// True when `e` says the database is out of reach or out of room (connection lost, refused,
/// server shutting down, disk full) rather than that one statement was wrong: every later
/// write would fail the same way until the database is back.
pub(crate) fn is_connection_failure(e: &postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        // Not the server's answer: the connection itself failed.
        return true;
    };
    let code = db.code().code();
    // 08: connection exception; 53: insufficient resources (disk full, out of memory,
    // too many connections); 57P0x: the server is shutting down or starting; 25006: the
    // server went read-only (a standby); 58: system error (I/O).
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || code.starts_with("58")
        || code == "25006"
}
