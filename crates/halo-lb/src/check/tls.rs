//! TLS for https, pops and imaps: rustls with the ring provider and **no certificate
//! verification**, as ldirectord (`ssl_opts => { verify_hostname => 0 }`): a health check asks
//! "does this server answer", and real servers commonly carry self-signed or VIP-named
//! certificates. The handshake signature is still checked against the presented key, so the
//! peer must at least hold the key of the certificate it shows.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

#[derive(Debug)]
struct NoVerify {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerify {
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
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn build_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider) as Arc<CryptoProvider>)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify { algorithms }))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// One configuration per ALPN set, built once: thousands of checks share it (and its
/// session cache, so repeated checks of a server resume their sessions).
fn config(http: bool) -> Result<Arc<ClientConfig>, String> {
    static HTTP: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static PLAIN: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    if http {
        HTTP.get_or_init(|| build_config(&[b"http/1.1"])).clone()
    } else {
        PLAIN.get_or_init(|| build_config(&[])).clone()
    }
}

/// The name sent in the handshake: `virtualhost` when it is a DNS name (its `:port`, if any,
/// removed), else the real server's address, for which no SNI is sent.
pub(crate) fn server_name(virtualhost: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    if let Some(vh) = virtualhost {
        let host = strip_port(vh);
        if host.parse::<IpAddr>().is_err() {
            if let Ok(name) = ServerName::try_from(host.to_string()) {
                return name;
            }
        }
    }
    ServerName::IpAddress(ip.into())
}

/// `www.example.com:8443` → `www.example.com`; `[2001:db8::1]:443` → `2001:db8::1`.
pub(crate) fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    tcp: S,
    virtualhost: Option<&str>,
    ip: IpAddr,
    http: bool,
) -> Result<TlsStream<S>, String> {
    let connector = TlsConnector::from(config(http)?);
    connector.connect(server_name(virtualhost, ip), tcp).await.map_err(|e| format!("TLS handshake: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(server_name(None, ip), ServerName::IpAddress(_)));
        assert!(matches!(server_name(Some("10.0.0.1"), ip), ServerName::IpAddress(_)));
        assert!(matches!(server_name(Some("www.example.com:8443"), ip), ServerName::DnsName(_)));
        assert!(matches!(server_name(Some("bad name!"), ip), ServerName::IpAddress(_)));
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("h:80"), "h");
        assert!(config(true).is_ok() && config(false).is_ok());
    }
}
