//! TLS on both sides of the proxy: the interception acceptor (leaf certificates from the
//! local CA, chosen by SNI or, for IP literals, by the CONNECT host) and the upstream client
//! configuration (webpki roots plus `upstream.extra_ca_files`). ring is the only provider.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::ca::CertificateAuthority;
use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// ALPN protocols offered to clients.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Resolves the leaf for the SNI the client sent, else for the CONNECT host.
#[derive(Debug)]
struct LeafResolver {
    ca: Arc<dyn CertificateAuthority>,
    fallback_host: String,
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name().unwrap_or(&self.fallback_host);
        match self.ca.leaf_for(host) {
            Ok(k) => Some(k),
            Err(e) => {
                tracing::warn!(host, error = %e, "no certificate for host");
                None
            }
        }
    }
}

/// A server config for one intercepted connection whose CONNECT host is `connect_host`.
pub fn intercept_config(
    ca: Arc<dyn CertificateAuthority>,
    connect_host: &str,
) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(LeafResolver {
            ca,
            fallback_host: connect_host.to_string(),
        }));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The upstream client config: webpki roots plus every certificate in `extra_ca_files`.
/// ALPN is left empty: the HTTPS connector sets h2 and http/1.1.
pub fn upstream_config(extra_ca_files: &[PathBuf]) -> Result<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| Error::Tls(format!("upstream.extra_ca_files {}: {e}", path.display())))?;
        let mut n = 0;
        for cert in certs {
            let cert = cert.map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            n += 1;
        }
        if n == 0 {
            return Err(Error::Tls(format!(
                "upstream.extra_ca_files {}: no PEM certificate found",
                path.display()
            )));
        }
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// True when `prefix` starts like a TLS handshake record (ContentType 22, version 3.x).
pub fn looks_like_tls(prefix: &[u8]) -> bool {
    prefix.len() >= 3 && prefix[0] == 0x16 && prefix[1] == 0x03 && prefix[2] <= 0x04
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_sniffing() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01, 0x02, 0x00]));
        assert!(!looks_like_tls(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_tls(&[0x16]));
    }

    #[test]
    fn extra_ca_file_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("empty.pem");
        std::fs::write(&p, "nothing").unwrap();
        let e = upstream_config(&[p]).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
    }
}
