//! The environment that points a runtime at Clawser (`clawser env`, `clawser run`): proxy
//! URLs with the agent's credential, and CA settings for every client family (Node, Python,
//! curl, git, cargo, AWS, pip, Codex, Hermes). Pure except for writing the CA bundle.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::write_public;

/// Where system roots usually live; the first readable one goes into the bundle.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

/// The bundle file name inside the data dir.
pub const BUNDLE_FILE: &str = "ca-bundle.pem";

/// The names, among `present`, that `clawser run` removes from the command's environment:
/// every `CLAWSER_*` variable (the admin or approver token, the config path), so an agent
/// never inherits its operator's authority.
pub fn withheld<I, S>(present: I) -> Vec<S>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    present
        .into_iter()
        .filter(|n| {
            n.as_ref()
                .to_str()
                .is_some_and(|n| n.to_ascii_uppercase().starts_with("CLAWSER_"))
        })
        .collect()
}

/// Inputs of [`exports`].
#[derive(Debug, Clone)]
pub struct RuntimeEnv<'a> {
    pub proxy_host: &'a str,
    pub proxy_port: u16,
    pub agent: &'a str,
    pub token: &'a str,
    pub ca_cert: &'a Path,
    pub bundle: &'a Path,
    pub no_proxy: &'a [String],
}

/// The variables, in print order.
pub fn exports(e: &RuntimeEnv<'_>) -> Vec<(String, String)> {
    let host = if e.proxy_host.contains(':') {
        format!("[{}]", e.proxy_host)
    } else {
        e.proxy_host.to_string()
    };
    let proxy = format!("http://{}:{}@{host}:{}", e.agent, e.token, e.proxy_port);
    let bundle = e.bundle.display().to_string();
    let ca = e.ca_cert.display().to_string();
    let no_proxy = e.no_proxy.join(",");
    let mut v: Vec<(String, String)> = vec![
        ("HTTPS_PROXY", proxy.clone()),
        ("HTTP_PROXY", proxy.clone()),
        ("https_proxy", proxy.clone()),
        ("http_proxy", proxy),
        ("NO_PROXY", no_proxy.clone()),
        ("no_proxy", no_proxy),
        ("NODE_USE_ENV_PROXY", "1".to_string()),
        ("NODE_EXTRA_CA_CERTS", ca),
        ("SSL_CERT_FILE", bundle.clone()),
        ("REQUESTS_CA_BUNDLE", bundle.clone()),
        ("CURL_CA_BUNDLE", bundle.clone()),
        ("GIT_SSL_CAINFO", bundle.clone()),
        ("CARGO_HTTP_CAINFO", bundle.clone()),
        ("AWS_CA_BUNDLE", bundle.clone()),
        ("PIP_CERT", bundle.clone()),
        ("CODEX_CA_CERTIFICATE", bundle.clone()),
        ("HERMES_CA_BUNDLE", bundle.clone()),
        ("HERMES_EXTRA_CA_CERTS", bundle.clone()),
        ("GIT_CONFIG_COUNT", "1".to_string()),
        ("GIT_CONFIG_KEY_0", "http.sslCAInfo".to_string()),
        ("GIT_CONFIG_VALUE_0", bundle),
        ("CLAWSER_AGENT", e.agent.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

/// Shell `export` lines, single-quoted.
pub fn to_shell(vars: &[(String, String)]) -> String {
    vars.iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''")))
        .collect()
}

/// A JSON object of the variables.
pub fn to_json(vars: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_default()
}

/// Writes `<data_dir>/ca-bundle.pem`: the system roots (if found) followed by the Clawser
/// CA, so tunnelled passthrough hosts and direct hosts still verify.
pub fn write_bundle(data_dir: &Path, ca_pem: &str) -> Result<PathBuf> {
    let system = std::env::var_os("CLAWSER_SYSTEM_CA_BUNDLE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut text = system;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# Clawser local CA\n");
    text.push_str(ca_pem);
    let path = data_dir.join(BUNDLE_FILE);
    write_public(&path, text.as_bytes())?;
    std::fs::canonicalize(&path).map_err(Error::io("resolving", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_cover_every_client() {
        let e = RuntimeEnv {
            proxy_host: "127.0.0.1",
            proxy_port: 8080,
            agent: "dev",
            token: "clw_abc",
            ca_cert: Path::new("/c/ca.pem"),
            bundle: Path::new("/d/ca-bundle.pem"),
            no_proxy: &[],
        };
        let v = exports(&e);
        let get = |k: &str| v.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("HTTPS_PROXY"),
            Some("http://dev:clw_abc@127.0.0.1:8080")
        );
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), Some("/c/ca.pem"));
        for k in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO",
            "CARGO_HTTP_CAINFO",
            "AWS_CA_BUNDLE",
            "PIP_CERT",
            "CODEX_CA_CERTIFICATE",
            "HERMES_CA_BUNDLE",
            "HERMES_EXTRA_CA_CERTS",
            "GIT_CONFIG_VALUE_0",
        ] {
            assert_eq!(get(k), Some("/d/ca-bundle.pem"), "{k}");
        }
        assert_eq!(get("GIT_CONFIG_KEY_0"), Some("http.sslCAInfo"));
        assert_eq!(get("NODE_USE_ENV_PROXY"), Some("1"));
        assert_eq!(get("NO_PROXY"), Some(""));
    }

    #[test]
    fn shell_quoting() {
        let s = to_shell(&[("A".into(), "it's".into())]);
        assert_eq!(s, "export A='it'\\''s'\n");
    }

    #[test]
    fn admin_secrets_are_withheld_from_run() {
        let got = withheld([
            "PATH",
            "CLAWSER_ADMIN_TOKEN",
            "clawser_config",
            "HOME",
            "CLAWSER_LOG",
        ]);
        assert_eq!(
            got,
            vec!["CLAWSER_ADMIN_TOKEN", "clawser_config", "CLAWSER_LOG"]
        );
    }
}
