//! Real clients accept the certificates Clawser issues: Python with VERIFY_X509_STRICT,
//! Node's TLS stack with NODE_EXTRA_CA_CERTS, curl and git (elsewhere), rustls (identity.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{run_with_env, World};

const PYTHON: &str = r#"
import json, os, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
proxy = os.environ["HTTPS_PROXY"]
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"https": proxy}),
    urllib.request.HTTPSHandler(context=ctx),
)
with opener.open(sys.argv[1], timeout=20) as r:
    body = json.load(r)
    print(r.status, body["path"])
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_with_strict_x509_verification() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let url = w.upstream.url("/py");
    let out = run_with_env("python3", &["-c", PYTHON, url.as_str()], &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200 /py");
}

// Node 20 has no built-in env proxy for https.get, so the script does what an agent's HTTP
// library does: CONNECT through HTTPS_PROXY, then TLS verified against NODE_EXTRA_CA_CERTS.
const NODE: &str = r#"
const http = require('http'), tls = require('tls');
const target = new URL(process.argv[1]);
const proxy = new URL(process.env.HTTPS_PROXY);
const auth = Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64');
const req = http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT',
  path: `${target.hostname}:${target.port}`, headers: {'Proxy-Authorization': 'Basic ' + auth}});
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.error('CONNECT', res.statusCode); process.exit(2); }
  const s = tls.connect({socket, servername: target.hostname}, () => {
    s.write(`GET ${target.pathname} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`);
  });
  let data = '';
  s.on('data', d => data += d);
  s.on('end', () => { console.log(data.split('\r\n')[0]); });
  s.on('error', e => { console.error('TLS', e.message); process.exit(3); });
});
req.end();
"#;

#[tokio::test(flavor = "multi_thread")]
async fn node_tls_trusts_the_leaf_through_node_extra_ca_certs() {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("node is required (the CI script installs it)");
    }
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let url = w.upstream.url("/node");
    let out = run_with_env("node", &["-e", NODE, url.as_str()], &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "HTTP/1.1 200 OK"
    );
}
