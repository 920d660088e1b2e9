//! A real local HTTPS upstream for integration tests: its own CA generated at test time,
//! a certificate for `localhost` and 127.0.0.1, h1 and h2 by ALPN, an echo handler, and
//! `git http-backend` as CGI under `/git/`. It counts every request it receives.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    pub git_root: PathBuf,
    pub hits: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// When set, `/private/*` and `/git/private/*` need this token (Bearer, or the password
    /// of Basic), else 401 with a Basic challenge.
    pub required_token: Arc<Mutex<Option<String>>>,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().unwrap().last().cloned()
    }
    /// `https://localhost:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    pub async fn start(dir: &Path) -> Upstream {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "upstream test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca_path = dir.join("upstream-ca.pem");
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        // github.test: a GitHub Enterprise-like name for clients (gh) that never send
        // loopback names through a proxy; Clawser resolves it with proxy.resolve.
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "github.test".to_string()])
                .unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.use_authority_key_identifier_extension = true;
        let leaf = p.signed_by(&leaf_key, &issuer).unwrap();
        // For upstreams in other languages (the SigV4 verifier in Python).
        std::fs::write(dir.join("upstream-leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("upstream-leaf.key"), leaf_key.serialize_pem()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));

        let git_root = dir.join("git");
        std::fs::create_dir_all(&git_root).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let required_token: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (h, s, root, rt) = (
            hits.clone(),
            seen.clone(),
            git_root.clone(),
            required_token.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, h, s, root, rt) = (
                    acceptor.clone(),
                    h.clone(),
                    s.clone(),
                    root.clone(),
                    rt.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| {
                        let (h, s, root, rt) = (h.clone(), s.clone(), root.clone(), rt.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(handle(req, h, s, root, rt).await)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            ca_path,
            git_root,
            hits,
            seen,
            required_token,
        }
    }

    /// Makes `/private/*` and `/git/private/*` require `token`.
    pub fn require_token(&self, token: &str) {
        *self.required_token.lock().unwrap() = Some(token.to_string());
    }

    /// Creates a bare repository `name` (e.g. `dev/app.git`) that accepts pushes.
    pub fn bare_repo(&self, name: &str) -> PathBuf {
        let path = self.git_root.join(name);
        let out = std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = std::process::Command::new("git")
            .args(["-C"])
            .arg(&path)
            .args(["config", "http.receivepack", "true"])
            .output()
            .unwrap();
        assert!(out.status.success());
        path
    }
}

async fn handle(
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    git_root: PathBuf,
    required_token: Arc<Mutex<Option<String>>>,
) -> Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: headers.clone(),
        body_len: body.len(),
    });
    let private =
        parts.uri.path().starts_with("/private/") || parts.uri.path().starts_with("/git/private/");
    let wanted = required_token.lock().unwrap().clone();
    if let (true, Some(token)) = (private, wanted) {
        let auth = headers.get("authorization").cloned().unwrap_or_default();
        let basic_pass = auth
            .strip_prefix("Basic ")
            .and_then(|b| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()));
        let in_query = form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .any(|(k, v)| k == "key" && v == token.as_str());
        let ok = auth == format!("Bearer {token}")
            || basic_pass.as_deref() == Some(token.as_str())
            || in_query;
        if !ok {
            return Response::builder()
                .status(401)
                .header("www-authenticate", "Basic realm=\"test\"")
                .body(Full::new(Bytes::from("unauthorized")))
                .unwrap();
        }
    }
    if let Some(rest) = parts.uri.path().strip_prefix("/git/") {
        return git_cgi(&parts, rest, body, &git_root).await;
    }
    let echo = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": headers,
        "body_len": body.len(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(echo.to_string())))
        .unwrap()
}

async fn git_cgi(
    parts: &http::request::Parts,
    path_info: &str,
    body: Bytes,
    root: &Path,
) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{path_info}"))
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("HTTP_GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((i, n)) = split else {
        return Response::builder()
            .status(500)
            .body(Full::new(Bytes::from(out.stderr)))
            .unwrap();
    };
    let head = String::from_utf8_lossy(&raw[..i]).into_owned();
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v
                    .trim()
                    .split(' ')
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(StatusCode::OK);
            } else {
                resp = resp.header(k.trim(), v.trim());
            }
        }
    }
    resp.status(status)
        .body(Full::new(Bytes::copy_from_slice(&raw[i + n..])))
        .unwrap()
}
