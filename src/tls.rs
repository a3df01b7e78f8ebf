//! TLS plumbing shared by the recorder and the replay server: the local mf certificate
//! authority, leaf certificates minted on the fly for each server name (cached), and rustls
//! configurations for listeners and upstream connections.
//!
//! The CA's private key lives only in the user's config directory (mode 0600); it is never
//! written into a recording or a fixtures folder.
//!
//! Imports: nothing from mf.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// File names inside the CA directory.
const CA_CERT: &str = "mf-ca.pem";
const CA_KEY: &str = "mf-ca-key.pem";

/// ALPN protocols offered by mf's TLS listeners, most preferred first.
pub const ALPN_H2_H1: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// ALPN for listeners that speak HTTP/1.1 only.
pub const ALPN_H1: [&[u8]; 1] = [b"http/1.1"];

/// Why TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no mf CA in {0}: run `mf ca init` first")]
    NoCa(PathBuf),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Mint(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Where the CA lives: `$MF_CA_DIR`, else `$XDG_CONFIG_HOME/mf`, else `~/.config/mf`.
pub fn default_ca_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MF_CA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return PathBuf::from(dir).join("mf");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("mf")
}

/// The local certificate authority that signs mf's leaf certificates.
pub struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    /// Path of the CA certificate in `dir` (what users add to their trust stores).
    pub fn cert_path(dir: &Path) -> PathBuf {
        dir.join(CA_CERT)
    }

    /// Loads the CA from `dir`, creating it first when missing. Returns whether it was created.
    ///
    /// # Errors
    /// Unreadable or unwritable files, a damaged CA.
    pub fn init(dir: &Path) -> Result<(Ca, bool), TlsError> {
        if Self::cert_path(dir).exists() {
            return Ok((Self::load(dir)?, false));
        }
        create_private_dir(dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "mf local CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "mf record-and-replay");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (not_before, not_after) = validity(10);
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        let key_path = dir.join(CA_KEY);
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        let cert_path = Self::cert_path(dir);
        std::fs::write(&cert_path, cert.pem()).map_err(|e| file_err(&cert_path, e))?;
        set_mode(&cert_path, 0o644)?;
        Ok((Self::load(dir)?, true))
    }

    /// Loads an existing CA from `dir`.
    ///
    /// # Errors
    /// [`TlsError::NoCa`] when there is none; damaged files.
    pub fn load(dir: &Path) -> Result<Ca, TlsError> {
        let cert_path = Self::cert_path(dir);
        if !cert_path.exists() {
            return Err(TlsError::NoCa(dir.to_path_buf()));
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
        let key_path = dir.join(CA_KEY);
        let key_pem = std::fs::read_to_string(&key_path).map_err(|e| file_err(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file_err(&key_path, e))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| file_err(&cert_path, e))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| file_err(&cert_path, e))?;
        Ok(Ca {
            cert_pem,
            cert_der,
            issuer,
            dir: dir.to_path_buf(),
        })
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The directory the CA was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mints a leaf certificate for `name` (a DNS name or an IP address), signed by this CA.
    ///
    /// # Errors
    /// Certificate generation failed.
    pub fn mint(&self, name: &str) -> Result<CertifiedKey, TlsError> {
        self.mint_for(&[name.to_string()])
    }

    /// Mints one leaf valid for all `names` (the first is the common name).
    ///
    /// # Errors
    /// Certificate generation failed.
    pub fn mint_for(&self, names: &[String]) -> Result<CertifiedKey, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("localhost", String::as_str),
        );
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        // Short-lived enough for browsers' leaf limits (398 days).
        let (not_before, not_after) = validity(1);
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.cert_der.clone()],
            signing,
        ))
    }
}

/// Validity from one day ago to `years` after that (whole days; no time crate needed here).
fn validity(years: u64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = 86_400;
    let from = time::OffsetDateTime::from_unix_timestamp((now - day) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let to = time::OffsetDateTime::from_unix_timestamp((now + years * 365 * day) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    (from, to)
}

/// Creates the CA folder owner-only (0700). The mode given at creation is masked by the
/// umask (`umask 000` made it 0777), so it is set again explicitly afterwards.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    set_mode(dir, 0o700)
}

/// Sets a file's permission bits exactly, whatever the umask was when it was created.
fn set_mode(path: &Path, mode: u32) -> Result<(), TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| file_err(path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| file_err(path, e))?;
    f.write_all(data).map_err(|e| file_err(path, e))?;
    set_mode(path, 0o600)
}

/// Serves a leaf for whatever name the client asks for (SNI), minting it on first use.
/// Minting costs a key generation and a signature, so leaves are cached per name.
pub struct MintingResolver {
    ca: Arc<Ca>,
    /// Name used when the client sends no SNI (connections to an IP address).
    fallback_name: String,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for MintingResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintingResolver")
            .field("fallback_name", &self.fallback_name)
            .finish()
    }
}

impl MintingResolver {
    /// A resolver signing with `ca`; `fallback_name` when there is no SNI.
    pub fn new(ca: Arc<Ca>, fallback_name: &str) -> Self {
        MintingResolver {
            ca,
            fallback_name: fallback_name.to_string(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The leaf for `name`, from the cache or freshly minted.
    pub fn leaf(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(hit) = self.cache.lock().ok()?.get(&name) {
            return Some(hit.clone());
        }
        match self.ca.mint(&name) {
            Ok(leaf) => {
                let leaf = Arc::new(leaf);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(name, leaf.clone());
                }
                Some(leaf)
            }
            Err(e) => {
                tracing::warn!(name = %name, error = %e, "could not mint a certificate");
                None
            }
        }
    }
}

impl MintingResolver {
    /// Clients that connect to an IP address send no SNI: one leaf covers the fallback name
    /// and the loopback addresses.
    fn leaf_without_sni(&self) -> Option<Arc<CertifiedKey>> {
        const KEY: &str = "";
        if let Some(hit) = self.cache.lock().ok()?.get(KEY) {
            return Some(hit.clone());
        }
        let names = [
            self.fallback_name.clone(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let leaf = Arc::new(self.ca.mint_for(&names).ok()?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(KEY.to_string(), leaf.clone());
        }
        Some(leaf)
    }
}

impl ResolvesServerCert for MintingResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(name) => self.leaf(name),
            None => self.leaf_without_sni(),
        }
    }
}

/// A listener config that mints leaves from `ca`, offering `alpn`.
pub fn minting_server_config(
    ca: Arc<Ca>,
    fallback_name: &str,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_no_client_auth()
                    .with_cert_resolver(Arc::new(MintingResolver::new(ca, fallback_name)))
            });
    match config.as_mut() {
        Ok(c) => c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect(),
        Err(e) => tracing::error!(error = %e, "tls server config"),
    }
    // The ring provider supports the safe defaults, so the builder cannot fail here; fall back
    // to a config without ALPN rather than panic if a future rustls disagrees.
    Arc::new(config.unwrap_or_else(|_| {
        ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert))
    }))
}

#[derive(Debug)]
struct NoCert;
impl ResolvesServerCert for NoCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

/// A listener config from a PEM certificate chain and key, offering `alpn`.
///
/// # Errors
/// Unreadable or invalid files.
pub fn file_server_config(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How mf verifies upstream servers.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTls {
    /// Extra trusted CA certificates (PEM), e.g. a private CA.
    pub extra_ca: Option<PathBuf>,
    /// Accept any certificate (loudly warned about by the CLI).
    pub insecure: bool,
}

/// A client config for upstream connections offering `alpn`.
///
/// # Errors
/// Unreadable CA file.
pub fn client_config(tls: &UpstreamTls, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &tls.extra_ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| file_err(path, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(path, e))?;
            if certs.is_empty() {
                return Err(file_err(path, "no certificate in the file"));
            }
            for c in certs {
                roots.add(c).map_err(|e| file_err(path, e))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Why a TLS handshake failed, in words a user can act on: the rustls error inside `e`
/// (what the peer's alert said, or what was wrong with its certificate) rather than the
/// generic I/O wrapper, so that a missing ALPN protocol is not mistaken for a trust problem.
pub fn handshake_cause(e: &std::io::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "the peer closed the connection during the handshake".into()
            }
            _ => e.to_string(),
        };
    };
    match tls {
        // RFC 7301 §3.2: the server found no protocol in common with the client's list.
        E::NoApplicationProtocol | E::AlertReceived(A::NoApplicationProtocol) => {
            "no application protocol in common (ALPN, TLS alert 120)".into()
        }
        E::AlertReceived(A::UnknownCA) => {
            "the peer does not trust the certificate: unknown CA (TLS alert unknown_ca)".into()
        }
        E::AlertReceived(A::BadCertificate) => {
            "the peer rejected the certificate (TLS alert bad_certificate)".into()
        }
        E::AlertReceived(A::CertificateUnknown) => {
            "the peer rejected the certificate (TLS alert certificate_unknown)".into()
        }
        E::AlertReceived(A::CertificateExpired) => {
            "the peer says the certificate expired (TLS alert certificate_expired)".into()
        }
        E::AlertReceived(A::ProtocolVersion) | E::AlertReceived(A::HandshakeFailure) => {
            format!("no TLS version or cipher suite in common ({tls})")
        }
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the certificate is signed by an unknown CA".into()
        }
        E::InvalidCertificate(C::NotValidForName)
        | E::InvalidCertificate(C::NotValidForNameContext { .. }) => {
            "the certificate is not valid for this name".into()
        }
        E::InvalidCertificate(C::Expired) | E::InvalidCertificate(C::ExpiredContext { .. }) => {
            "the certificate has expired".into()
        }
        E::PeerIncompatible(p) => format!("no TLS parameters in common ({p:?})"),
        other => other.to_string(),
    }
}

/// True when `e` says the peer does not trust the certificate it was shown (the hint to
/// check the mf CA is then worth giving).
pub fn is_trust_failure(e: &std::io::Error) -> bool {
    use rustls::{AlertDescription as A, Error as E};
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(E::AlertReceived(
            A::UnknownCA | A::BadCertificate | A::CertificateUnknown
        ))
    )
}

/// `--insecure`: accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_created_once_and_mints_cached_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, created) = Ca::init(dir.path()).unwrap();
        assert!(created);
        let (_, created_again) = Ca::init(dir.path()).unwrap();
        assert!(!created_again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_KEY))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let resolver = MintingResolver::new(Arc::new(ca), "localhost");
        let a = resolver.leaf("api.example.com").unwrap();
        let b = resolver.leaf("API.example.com").unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "second handshake for a name reuses the leaf"
        );
        assert_eq!(a.cert.len(), 2, "leaf plus CA");
        assert!(resolver.leaf("127.0.0.1").is_some());
    }

    #[test]
    fn missing_ca_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Ca::load(dir.path()).err().unwrap();
        assert!(err.to_string().contains("mf ca init"));
    }
}
