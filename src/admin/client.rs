//! The CLI's client of the admin API (plain HTTP on loopback, bearer token).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A connection to a running server's admin API.
pub struct AdminClient {
    addr: SocketAddr,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// A client for `addr` with `token`.
    pub fn new(addr: SocketAddr, token: String) -> AdminClient {
        AdminClient {
            addr,
            token,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    /// True when a server answers `/healthz` at the address.
    pub async fn is_up(addr: SocketAddr) -> bool {
        let c: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let Ok(req) = Request::get(format!("http://{addr}/healthz")).body(Full::new(Bytes::new()))
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), c.request(req)).await,
            Ok(Ok(r)) if r.status().is_success()
        )
    }

    async fn call(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes> {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| Error::Admin {
            status: 0,
            message: format!("cannot reach the admin API at {}: {e}", self.addr),
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::Admin {
                status: status.as_u16(),
                message: e.to_string(),
            })?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(Error::Admin {
                status: status.as_u16(),
                message,
            });
        }
        Ok(bytes)
    }

    /// GET a streaming response (server-sent events); the body is returned as it arrives.
    pub async fn stream(&self, path: &str) -> Result<hyper::body::Incoming> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}{path}", self.addr))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| Error::Admin {
            status: 0,
            message: format!("cannot reach the admin API at {}: {e}", self.addr),
        })?;
        if !resp.status().is_success() {
            return Err(Error::Admin {
                status: resp.status().as_u16(),
                message: format!("{path} answered {}", resp.status()),
            });
        }
        Ok(resp.into_body())
    }

    /// GET and decode JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let b = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&b)
            .map_err(|e| Error::Invalid(format!("bad response from {path}: {e}")))
    }

    /// GET as text.
    pub async fn get_text(&self, path: &str) -> Result<String> {
        let b = self.call(Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// POST JSON and decode JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Invalid(e.to_string()))?;
        let b = self.call(Method::POST, path, Some(body)).await?;
        serde_json::from_slice(&b)
            .map_err(|e| Error::Invalid(format!("bad response from {path}: {e}")))
    }
}
