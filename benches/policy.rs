//! One policy decision with the shipped pack: p50/p99 of `PolicyEngine::decide` on a
//! realistic input (no criterion: a plain timing loop, run with `cargo bench --bench policy`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use clawser::identity::{Agent, Job, Principal};
use clawser::model::RequestSummary;
use clawser::policy::{pack, EvalEngine, EvalOptions, PolicyEngine, PolicyInput, Target};

// As in the clawser binary (src/main.rs): mimalloc (declared by regorus with the default
// `mimalloc` feature), and no backtraces
// captured for the library errors regorus creates while evaluating.

fn main() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // POLICY_DIR=... measures another policy directory (A/B of a policy change).
    let given = std::env::var_os("POLICY_DIR").map(std::path::PathBuf::from);
    let dir = given.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("clawser-policy-bench-{}", std::process::id()))
    });
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
        pack::install_if_missing(&dir).unwrap();
    }
    for (name, engine) in [
        ("interpreter", EvalEngine::Interpreter),
        ("vm", EvalEngine::Vm),
    ] {
        // ENGINES=vm measures one engine only.
        if let Ok(only) = std::env::var("ENGINES") {
            if !only.split(',').any(|e| e == name) {
                continue;
            }
        }
        let opts = EvalOptions {
            engine,
            ..Default::default()
        };
        let engine = PolicyEngine::load(&dir, Duration::from_secs(1), opts).unwrap();
        run(name, &engine);
    }
    if given.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn run(name: &str, engine: &PolicyEngine) {
    // METHODS=GET,POST measures some request methods only (default: GET, POST, DELETE, and
    // the same three as GitHub API calls, with input.github filled as the proxy fills it).
    let methods = std::env::var("METHODS")
        .unwrap_or_else(|_| "GET,POST,DELETE,gh-GET,gh-POST,gh-DELETE".into());
    // The proxy's own input struct (PolicyInput), as the pipeline builds it, so the figure
    // includes serializing it into the regorus value.
    let agent: Agent = serde_json::from_value(serde_json::json!({
        "id": "oc-1", "runtime": "openclaw", "on_behalf_of": "alice", "roles": ["dev"], "labels": {},
        "created_at": "2026-11-24T12:00:00Z", "source": "config"}))
    .unwrap();
    let job: Job = serde_json::from_value(serde_json::json!({
        "id": "job_1", "title": "release 1.4", "started_by": "oc-1", "agents": ["oc-1"],
        "state": "open", "created_at": "2026-11-24T12:00:00Z"}))
    .unwrap();
    let principal = Principal {
        agent: Arc::new(agent),
        job: Some(Arc::new(job)),
        credential_id: "cred_1".into(),
    };
    let target = Target {
        env: "development".into(),
        service: "github".into(),
    };
    let requests: Vec<(RequestSummary, Option<serde_json::Value>)> = methods
        .split(',')
        .map(|m| {
            let (github, m) = match m.strip_prefix("gh-") {
                Some(m) => (true, m),
                None => (false, m),
            };
            let summary: RequestSummary = serde_json::from_value(serde_json::json!({
                "id": "req_1", "scheme": "https", "method": m, "host": "api.github.com", "port": 443,
                "path": "/repos/acme/api/issues/7/comments", "query": {},
                "headers": {"accept": ["application/json"], "authorization": ["<redacted>"], "user-agent": ["gh/2.40"]},
                "body": {"size": 12, "sha256": "00", "truncated": false}, "tls": {"sni": "api.github.com", "intercepted": true}
            }))
            .unwrap();
            let github = github.then(|| {
                let action = match m {
                    "GET" => "issues.list_comments",
                    "POST" => "issues.create_comment",
                    _ => "issues.delete_comment",
                };
                serde_json::json!({"repo": "acme/api", "owner": "acme", "name": "api",
                    "resource": "issues", "action": action})
            });
            (summary, github)
        })
        .collect();
    let inputs: Vec<PolicyInput> = requests
        .iter()
        .map(|(summary, github)| {
            let mut input = PolicyInput::new(&principal, summary, &target);
            input.github = github.clone();
            input
        })
        .collect();
    for i in &inputs {
        engine.decide(i);
    }
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for k in 0..n {
        let t = Instant::now();
        let e = engine.decide(&inputs[k % inputs.len()]);
        samples.push(t.elapsed());
        assert!(e.error.is_none());
    }
    let total = start.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "policy decide [{name}] (shipped pack, decide() incl. input serialization): n={n} p50={:.1}us p99={:.1}us mean={:.1}us",
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        total.as_secs_f64() * 1e6 / n as f64
    );
}
