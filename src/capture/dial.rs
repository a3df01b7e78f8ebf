//! The recording proxy's dialing: the shared dialer in `net::dial` with the proxy's connect
//! timeout, and whether an upstream speaks HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use super::setup::{ProxyConfig, Upstream};
pub(crate) use crate::net::dial::{probe_h2c, DialError, Dialed};

/// Opens a connection to `up` within the proxy's connect timeout: TCP, then TLS with `tls`
/// (its ALPN list) for https.
pub(crate) async fn dial(
    config: &ProxyConfig,
    up: &Upstream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Dialed, std::net::SocketAddr), DialError> {
    crate::net::dial::dial(config.connect_timeout, up, tls).await
}

/// Whether `up` speaks HTTP/2: ALPN for https upstreams, a prior-knowledge preface answered
/// with a SETTINGS frame for http ones. A TLS listener offers clients `h2` only when the
/// upstream takes it, so that clients speak to mf what they would speak to the upstream.
pub async fn upstream_speaks_h2(config: &ProxyConfig, up: &Upstream) -> bool {
    let within = Duration::from_secs(3);
    if !up.tls {
        return probe_h2c(up, within).await == Some(true);
    }
    let mut offer = (*config.upstream_tls_h2).clone();
    offer.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut probe = config.clone();
    probe.connect_timeout = within;
    matches!(dial(&probe, up, &Arc::new(offer)).await, Ok((d, _)) if d.alpn_h2())
}
