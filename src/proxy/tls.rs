//! The TLS proxy listener (`listen.proxy_tls`): clients speak TLS to egressd, then ordinary HTTP
//! proxy requests inside it (curl's `--proxy https://…`).
//!
//! - [`server_config`] turns the PEM files of `listen.proxy_tls` into a rustls `ServerConfig`.
//!   The config loader calls it, so a bad certificate or key is a located configuration error
//!   (`egressd check` reports it too), and the result travels in [`crate::config::Loaded`] into
//!   the [`crate::snapshot::Snapshot`]. Each accepted connection takes the `ServerConfig` of the
//!   snapshot current at accept time, so a reload that rotates the certificate or the client CA
//!   applies to the next handshake; established connections keep the one they negotiated.
//! - With `client_ca`, client certificates are requested and verified against that bundle, but
//!   not required: a client without one is served and identified by the other methods.
//! - The handshake must finish within `timeouts.request_header`; a failed or slow handshake is
//!   counted in `egressd_tls_handshake_failures_total` ([`Shared::tls_handshake_failures`])
//!   and ends only its own connection task.
//! - Over the connection caps a TLS client is closed before the handshake: a plain-text 503
//!   would be garbage to it, and the handshake is the expensive part the caps protect.
//! - Only `http/1.1` is offered by ALPN; the proxy speaks HTTP/1.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::limits::ConnPermit;
use super::listener;
use super::service::Shared;
use crate::config::settings::TlsListen;

/// A problem with the TLS material of `listen.proxy_tls`: `key` names the setting (`cert`,
/// `key`, `client_ca`) the error is reported at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaterialError {
    pub key: &'static str,
    pub message: String,
}

impl MaterialError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        MaterialError {
            key,
            message: message.into(),
        }
    }
}

/// Builds the listener's `ServerConfig` from PEM files (ring provider, TLS 1.2 and 1.3).
pub fn server_config(t: &TlsListen) -> Result<Arc<ServerConfig>, MaterialError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&t.cert, "cert")?;
    let key_pem = read(&t.key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| MaterialError::new("key", format!("no usable private key in PEM: {e}")))?;
    let verifier = match &t.client_ca {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates(ca, "client_ca")? {
                roots.add(c).map_err(|e| {
                    MaterialError::new("client_ca", format!("not a usable CA certificate: {e}"))
                })?;
            }
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| MaterialError::new("client_ca", e.to_string()))?
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MaterialError::new("cert", e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            MaterialError::new(
                "key",
                format!("the key does not fit the certificate or is unsupported: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, MaterialError> {
    std::fs::read(path).map_err(|e| MaterialError::new(key, format!("cannot read: {e}")))
}

/// Every `CERTIFICATE` block of a PEM file; at least one.
fn certificates(
    path: &Path,
    key: &'static str,
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let pem = read(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MaterialError::new(key, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(MaterialError::new(key, "no CERTIFICATE block in PEM file"));
    }
    Ok(certs)
}

/// What the TLS layer established about a client connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPeer {
    /// Names of the verified client certificate, lower case without a trailing dot: its SAN
    /// DNS names, else its subject CNs. Empty without a (verified) certificate.
    pub cert_names: Vec<Box<str>>,
}

impl TlsPeer {
    fn of(conn: &rustls::ServerConnection) -> TlsPeer {
        // rustls only exposes peer certificates that the verifier accepted.
        let cert_names = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| cert_names(leaf.as_ref()))
            .unwrap_or_default();
        TlsPeer { cert_names }
    }
}

/// SAN DNS names of a DER certificate, else its subject common names (lower case, one trailing
/// dot removed). A certificate that does not parse has no names.
pub fn cert_names(der: &[u8]) -> Vec<Box<str>> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let norm =
        |s: &str| -> Box<str> { s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase().into() };
    let mut names: Vec<Box<str>> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(norm(d));
            }
        }
    }
    if names.is_empty() {
        names = (cert.subject().iter_common_name())
            .filter_map(|cn| cn.as_str().ok())
            .map(norm)
            .collect();
    }
    names.retain(|n| !n.is_empty());
    names
}

/// One TLS listener connection: the handshake (bounded by `timeouts.request_header`), then the
/// same HTTP service as the plain listener. Accepting is `listener::serve`'s.
pub(crate) async fn handshake_and_serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: ConnPermit,
) {
    let _ = tcp.set_nodelay(true);
    let (config, timeout) = {
        let snap = shared.snapshot.load();
        (snap.tls.clone(), snap.settings.timeouts.request_header)
    };
    let Some(config) = config else {
        // A reload removed `listen.proxy_tls`; the listener stays bound until restart.
        tracing::debug!(%peer, "TLS listener no longer configured; connection closed");
        return;
    };
    let stream = match tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared.tls_handshake_failures.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.tls_handshake_failures.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let tls = TlsPeer::of(stream.get_ref().1);
    listener::serve_connection(stream, peer, shared, permit, Some(tls)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert(sans: &[&str], cn: Option<&str>) -> (String, KeyPair) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        (params.self_signed(&key).unwrap().pem(), key)
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn names_are_sans_else_cn() {
        let (pem, _) = cert(
            &["Host1.Health.Example.", "alt.health.example"],
            Some("ignored.example"),
        );
        let names = cert_names(&der(&pem));
        assert_eq!(
            names,
            vec!["host1.health.example".into(), "alt.health.example".into()]
        );
        let (pem, _) = cert(&[], Some("Ops.Agriculture.Example"));
        assert_eq!(
            cert_names(&der(&pem)),
            vec!["ops.agriculture.example".into()]
        );
        // IP SANs are not names; without DNS SANs the CN is used.
        let (pem, _) = cert(&["192.0.2.1"], Some("gw.example"));
        assert_eq!(cert_names(&der(&pem)), vec!["gw.example".into()]);
        assert!(cert_names(b"not a certificate").is_empty());
    }

    #[test]
    fn material_errors_name_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let (pem, key) = cert(&["proxy.test"], None);
        let (_, other_key) = cert(&["other.test"], None);
        let listen = |cert, key, client_ca| TlsListen {
            address: "127.0.0.1:0".parse().unwrap(),
            cert,
            key,
            client_ca,
        };
        let good = listen(
            write("c.pem", &pem),
            write("k.pem", &key.serialize_pem()),
            Some(write("ca.pem", &pem)),
        );
        let config = server_config(&good).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);

        let mismatch = listen(
            good.cert.clone(),
            write("k2.pem", &other_key.serialize_pem()),
            None,
        );
        assert_eq!(server_config(&mismatch).unwrap_err().key, "key");
        let no_key = listen(good.cert.clone(), write("k3.pem", &pem), None);
        assert_eq!(server_config(&no_key).unwrap_err().key, "key");
        let no_cert = listen(write("c2.pem", "nothing here"), good.key.clone(), None);
        assert_eq!(server_config(&no_cert).unwrap_err().key, "cert");
        let bad_ca = listen(
            good.cert.clone(),
            good.key.clone(),
            Some(write("ca2.pem", "x")),
        );
        assert_eq!(server_config(&bad_ca).unwrap_err().key, "client_ca");
    }
}
