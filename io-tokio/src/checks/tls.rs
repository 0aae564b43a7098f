//! The TLS client of https and gRPC-over-TLS checks (rustls, `ring`
//! provider, Mozilla's roots compiled in via webpki-roots).
//!
//! Consul's `TLSSkipVerify` sets Go's `InsecureSkipVerify`: the server's
//! certificate chain and name are not checked at all, the connection is
//! still encrypted. [`AcceptAnyCertificate`] does the same; it still checks
//! the handshake signatures, which Go does as well.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tribune_core::checks::TlsOptions;

/// The application protocol a check speaks over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// https checks use HTTP/1.1.
    Http1,
    /// gRPC requires HTTP/2 (`h2`).
    H2,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// `TLSSkipVerify`: any certificate, any name.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn build_config(skip_verify: bool, alpn: Alpn) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions");
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    } else {
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = match alpn {
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
        Alpn::H2 => vec![b"h2".to_vec()],
    };
    Arc::new(config)
}

/// One client config per (skip_verify, alpn), built on first use.
fn config(skip_verify: bool, alpn: Alpn) -> Arc<ClientConfig> {
    static CONFIGS: [OnceLock<Arc<ClientConfig>>; 4] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let slot = usize::from(skip_verify) * 2 + usize::from(alpn == Alpn::H2);
    CONFIGS[slot]
        .get_or_init(|| build_config(skip_verify, alpn))
        .clone()
}

/// A handshake failure worded like Go's `crypto/tls`, which is what Consul
/// users see (`tls: failed to verify certificate: x509: ...`).
fn handshake_error(e: &std::io::Error) -> String {
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(why)) => {
            let x509 = match why {
                CertificateError::UnknownIssuer => {
                    "certificate signed by unknown authority".to_string()
                }
                CertificateError::Expired | CertificateError::NotValidYet => {
                    "certificate has expired or is not yet valid".to_string()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "certificate is not valid for the requested name".to_string()
                }
                other => format!("{other:?}"),
            };
            format!("tls: failed to verify certificate: x509: {x509}")
        }
        Some(other) => format!("tls: {other}"),
        None => format!("tls: {e}"),
    }
}

/// Runs the TLS handshake over `stream`. The name verified and sent as SNI
/// is `tls.server_name`, else `host` (an IP address is verified against the
/// certificate's IP SANs and sent as no SNI, as Go does).
pub async fn connect(
    stream: TcpStream,
    host: &str,
    tls: &TlsOptions,
    alpn: Alpn,
) -> Result<TlsStream<TcpStream>, String> {
    let name = if tls.server_name.is_empty() {
        host
    } else {
        tls.server_name.as_str()
    };
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("tls: invalid server name {name:?}: {e}"))?;
    TlsConnector::from(config(tls.skip_verify, alpn))
        .connect(server_name, stream)
        .await
        .map_err(|e| handshake_error(&e))
}
