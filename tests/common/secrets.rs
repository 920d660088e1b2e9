//! A server holding one secret for `localhost`, for the secrets and grants tests.

use serde_json::Value;

use super::gate::APPROVERS;
use super::{base_config, Server, Upstream};

pub const REAL: &str = "ghp_RealSecretValue0123456789abcdefABCDEF";

/// A server whose config declares secret `gh` (from a file holding [`REAL`]) for
/// `localhost`, injected as `inject`; the upstream's `/private/*` requires [`REAL`].
pub async fn world(inject: &str, extra: &str) -> (tempfile::TempDir, Upstream, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    upstream.require_token(REAL);
    let token_file = tmp.path().join("gh.token");
    std::fs::write(&token_file, format!("{REAL}\n")).unwrap();
    let cfg = format!(
        "{}{APPROVERS}secrets:\n  - name: gh\n    from: {{file: {}}}\n    hosts: [localhost]\n    inject: {inject}\n    env: [GH_TOKEN, GITHUB_TOKEN]\n{extra}",
        base_config(tmp.path(), &upstream, "  hold_timeout: 2s"),
        token_file.display()
    );
    let server = Server::start(tmp.path(), &cfg);
    (tmp, upstream, server)
}

/// The `grt_…` id in CLI output.
pub fn grant_id(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("grt_"))
        .unwrap()
        .to_string()
}

/// Every ledger entry.
pub fn ledger(s: &Server) -> Vec<Value> {
    let out = s.cli_ok(&["ledger", "show", "--json"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_default()
}
