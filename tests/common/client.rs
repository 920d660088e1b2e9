//! A Rust client through the proxy: CONNECT with Basic credentials, TLS with rustls trusting
//! Clawser's CA, then HTTP/1.1 over the tunnel. It keeps one connection open so tests can
//! check what happens to an open connection.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct TunnelClient {
    sender: SendRequest<Empty<Bytes>>,
    host: String,
}

impl TunnelClient {
    pub async fn connect(
        proxy: std::net::SocketAddr,
        host: &str,
        port: u16,
        agent: &str,
        token: &str,
        ca_pem: &Path,
    ) -> TunnelClient {
        TunnelClient::try_connect(proxy, host, port, agent, token, ca_pem)
            .await
            .unwrap_or_else(|e| {
                panic!("CONNECT + TLS through the proxy failed (rustls must accept the leaf): {e}")
            })
    }

    /// Like `connect`, but returns an error instead of panicking (for crash tests).
    pub async fn try_connect(
        proxy: std::net::SocketAddr,
        host: &str,
        port: u16,
        agent: &str,
        token: &str,
        ca_pem: &Path,
    ) -> Result<TunnelClient, String> {
        let fut = async {
            let mut tcp = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{agent}:{token}"));
            let req = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n");
            tcp.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = Vec::new();
            while !buf.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                if tcp.read(&mut b).await.map_err(|e| e.to_string())? == 0 {
                    return Err("closed".to_string());
                }
                buf.push(b[0]);
            }
            if !buf.starts_with(b"HTTP/1.1 200") {
                return Err(String::from_utf8_lossy(&buf).into_owned());
            }
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca_pem).map_err(|e| e.to_string())? {
                roots
                    .add(c.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            Ok(TunnelClient {
                sender,
                host: format!("{host}:{port}"),
            })
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), fut)
            .await
            .map_err(|_| "timeout".to_string())?
    }

    /// GET without panicking: the status, or an error.
    pub async fn try_get(&mut self, path: &str) -> Result<u16, String> {
        let req = Request::get(path)
            .header("host", &self.host)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let fut = self.sender.send_request(req);
        let resp = tokio::time::timeout(std::time::Duration::from_secs(5), fut)
            .await
            .map_err(|_| "timeout".to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        Ok(status)
    }

    /// GET `path` on the open connection: (status, body).
    pub async fn get(&mut self, path: &str) -> (u16, String) {
        let req = Request::get(path)
            .header("host", &self.host)
            .body(Empty::new())
            .unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}
