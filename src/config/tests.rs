//! Tests of config loading and validation.

use super::*;

#[test]
fn embedded_defaults_are_valid() {
    let c = Config::from_yaml("", "<embedded defaults>", Path::new(".")).unwrap();
    assert_eq!(c.proxy.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.proxy.max_inspect_bytes, 1024 * 1024);
    assert_eq!(c.data_dir, Path::new("./data"));
}

#[test]
fn example_file_documents_the_defaults() {
    let text = include_str!("../../config.example.yaml");
    let ex = Config::from_yaml(text, "config.example.yaml", Path::new(".")).unwrap();
    let de = Config::from_yaml("", "<embedded defaults>", Path::new(".")).unwrap();
    assert_eq!(format!("{:?}", ex.proxy), format!("{:?}", de.proxy));
    assert_eq!(format!("{:?}", ex.ca), format!("{:?}", de.ca));
    assert_eq!(format!("{:?}", ex.policy), format!("{:?}", de.policy));
    assert_eq!(format!("{:?}", ex.upstream), format!("{:?}", de.upstream));
    assert_eq!(
        format!("{:?}", ex.environments),
        format!("{:?}", de.environments)
    );
    assert_eq!(ex.admin.listen, de.admin.listen);
    assert_eq!(format!("{:?}", ex.approvals), format!("{:?}", de.approvals));
    assert_eq!(format!("{:?}", ex.notify), format!("{:?}", de.notify));
    assert_eq!(ex.approvers, de.approvers);
    assert_eq!(ex.data_dir, de.data_dir);
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let e = Config::from_yaml("proxy:\n  listn: 1\n", "x.yaml", Path::new(".")).unwrap_err();
    assert!(e.to_string().contains("listn"), "{e}");
}

#[test]
fn relative_paths_follow_the_file() {
    let c = Config::from_yaml("data_dir: d\n", "x.yaml", Path::new("/etc/clawser")).unwrap();
    assert_eq!(c.data_dir, Path::new("/etc/clawser/d"));
}

#[test]
fn bad_values_are_rejected() {
    for (yaml, key) in [
        ("proxy:\n  listen: nope\n", "proxy.listen"),
        ("proxy:\n  idle_timeout: 5x\n", "proxy.idle_timeout"),
        ("admin:\n  listen: 0.0.0.0:1\n", "admin.listen"),
        ("ca:\n  leaf_validity_days: 400\n", "ca.leaf_validity_days"),
        ("agents:\n  - id: Bad Id\n", "agents[0].id"),
        (
            "agents:\n  - id: a\n    runtime: vim\n",
            "agents[0].runtime",
        ),
        ("log:\n  format: xml\n", "log.format"),
    ] {
        let e = Config::from_yaml(yaml, "x.yaml", Path::new(".")).unwrap_err();
        assert!(e.to_string().contains(key), "{yaml}: {e}");
    }
}

#[test]
fn approvers_and_webhooks_are_validated() {
    let ok = Config::from_yaml(
        "approvers:\n  - id: bob\n    roles: [release-approver]\nnotify:\n  webhooks:\n    - url: http://127.0.0.1:9/hook\n      events: [approval.created]\n",
        "t",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(ok.approvers[0].roles, vec!["release-approver".to_string()]);
    assert_eq!(
        ok.notify.webhooks[0].events,
        vec!["approval.created".to_string()]
    );
    assert_eq!(ok.proxy.hold_timeout, Duration::from_secs(110));
    assert_eq!(
        ok.proxy.worker_threads, None,
        "unset: the runtime's default"
    );
    let two = Config::from_yaml("proxy:\n  worker_threads: 2\n", "t", Path::new(".")).unwrap();
    assert_eq!(two.proxy.worker_threads, Some(2));
    assert_eq!(
        ok.proxy.shards, 0,
        "unset: the shared runtime serves the proxy"
    );
    let three = Config::from_yaml("proxy:\n  shards: 3\n", "t", Path::new(".")).unwrap();
    assert_eq!(three.proxy.shards, 3);
    for (bad, key) in [
        (
            "approvers:\n  - id: bob\n    roles: []\n",
            "approvers[0].roles",
        ),
        (
            "approvers:\n  - id: bob\n    roles: [a]\n  - id: bob\n    roles: [a]\n",
            "approvers[1].id",
        ),
        (
            "notify:\n  webhooks:\n    - url: ftp://x/\n",
            "notify.webhooks[0].url",
        ),
        (
            "notify:\n  webhooks:\n    - url: http://x/\n      events: [request.decided]\n",
            "notify.webhooks[0].events",
        ),
        ("proxy:\n  max_held: 0\n", "proxy.max_held"),
        ("proxy:\n  worker_threads: 0\n", "proxy.worker_threads"),
        ("proxy:\n  worker_threads: 5000\n", "proxy.worker_threads"),
        ("proxy:\n  shards: 5000\n", "proxy.shards"),
        ("proxy:\n  shards: -1\n", "proxy.shards"),
        ("proxy:\n  hold_timeout: soon\n", "proxy.hold_timeout"),
    ] {
        let e = Config::from_yaml(bad, "t", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{bad}: {e}");
    }
}

#[test]
fn secrets_and_grants() {
    let ok = r#"
secrets:
  - name: github
    from: {command: "gh auth token", ttl: 10m}
    hosts: [GitHub.com, "*.github.com"]
    inject: basic
    env: [GH_TOKEN]
  - name: key
    from: {file: key.txt}
    hosts: [api.example.com]
    inject: {header: X-Api-Key, format: "Key {value}"}
  - name: q
    from: {env: Q}
    hosts: [q.example.com]
    inject: {query: api_key}
grants:
  - name: ci
    role: ci
    secret: github
    actions: [deploy]
    max_uses: 3
"#;
    let c = Config::from_yaml(ok, "t", Path::new("/etc/clawser")).unwrap();
    assert_eq!(c.secrets.len(), 3);
    assert_eq!(c.secrets[0].hosts, vec!["github.com", "*.github.com"]);
    assert_eq!(
        c.secrets[1].from,
        crate::config::SecretSource::File("/etc/clawser/key.txt".into())
    );
    // The grant's hosts default to its secret's.
    assert_eq!(c.grants[0].scope.hosts, c.secrets[0].hosts);
    let bad = [
        ("secrets: [{name: a, from: {env: A, file: f}, hosts: [x]}]", "secrets[0].from"),
        ("secrets: [{name: a, from: {env: A}}]", "secrets[0].hosts"),
        ("secrets: [{name: a, from: {env: A}, hosts: [x], inject: sigv2}]", "secrets[0].inject"),
        ("secrets: [{name: a, from: {env: A}, hosts: [x], env: [1BAD]}]", "secrets[0].env"),
        ("secrets: [{name: a, from: {env: A}, hosts: [x], inject: {header: Host}}]", "secrets[0].inject.header"),
        ("secrets: [{name: a, from: {env: A}, hosts: [x]}, {name: a, from: {env: B}, hosts: [y]}]", "secrets[1].name"),
        ("secrets: [{name: a, from: {env: A}, hosts: [x], inject: aws, add: true}]", "secrets[0].add"),
        ("grants: [{name: g, agent: a, role: r}]", "grants[0]"),
        ("grants: [{name: g, agent: a, secret: nope}]", "grants[0].secret"),
        ("grants: [{name: g, agent: a, expires_at: tomorrow}]", "grants[0].expires_at"),
        ("grants: [{name: g, agent: a, max_uses: 0}]", "grants[0].max_uses"),
    ];
    for (yaml, key) in bad {
        let e = Config::from_yaml(yaml, "t", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{yaml}: {e}");
    }
}
