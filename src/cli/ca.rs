//! `mf ca`: the local certificate authority used for TLS listeners and HTTPS interception.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::tls::{default_ca_dir, Ca};

/// Manage mf's local certificate authority.
///
/// mf signs the certificates of its TLS listeners (`--tls`) and of intercepted HTTPS hosts
/// with this CA. Clients must trust it:
///   curl:    curl --cacert "$(mf ca path)" ...
///   Python:  SSL_CERT_FILE="$(mf ca path)" or REQUESTS_CA_BUNDLE="$(mf ca path)"
///   Node:    NODE_EXTRA_CA_CERTS="$(mf ca path)"
///   Debian:  cp "$(mf ca path)" /usr/local/share/ca-certificates/mf.crt && update-ca-certificates
/// The private key stays in the CA directory (mode 0600) and is never written anywhere else.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct CaArgs {
    /// CA directory (default: $MF_CA_DIR, else $XDG_CONFIG_HOME/mf, else ~/.config/mf).
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) dir: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) action: CaAction,
}

/// What to do with the CA.
#[derive(Debug, Subcommand)]
pub(crate) enum CaAction {
    /// Create the CA if it does not exist yet, and print where its certificate is.
    Init,
    /// Print the path of the CA certificate (for --cacert and trust stores).
    Path,
    /// Print the CA certificate (PEM) on stdout.
    Export,
}

pub(super) fn run(args: CaArgs) -> anyhow::Result<u8> {
    let dir = args.dir.unwrap_or_else(default_ca_dir);
    match args.action {
        CaAction::Init => {
            let (ca, created) = Ca::init(&dir)
                .with_context(|| format!("creating the mf CA in {}", dir.display()))?;
            let path = Ca::cert_path(ca.dir());
            if created {
                eprintln!("mf: created a new CA; trust this certificate in your clients:");
            } else {
                eprintln!("mf: the CA already exists; its certificate:");
            }
            writeln!(std::io::stdout(), "{}", path.display())?;
        }
        CaAction::Path => {
            let ca = Ca::load(&dir)?;
            writeln!(std::io::stdout(), "{}", Ca::cert_path(ca.dir()).display())?;
        }
        CaAction::Export => {
            let ca = Ca::load(&dir)?;
            std::io::stdout().write_all(ca.cert_pem().as_bytes())?;
        }
    }
    Ok(0)
}
