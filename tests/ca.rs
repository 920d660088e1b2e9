//! The local CA as an operator meets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{base_config, Server, Upstream};

#[tokio::test(flavor = "multi_thread")]
async fn ca_init_show_and_refusal_of_a_readable_key() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let cfg = base_config(tmp.path(), &upstream, "");
    std::fs::write(tmp.path().join("clawser.yaml"), &cfg).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .arg("-c")
            .arg(tmp.path().join("clawser.yaml"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(&["ca", "init"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("generated a new CA") && text.contains("fingerprint: SHA256 "),
        "{text}"
    );
    let out = cli(&["ca", "show"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("generated"));
    assert_eq!(text.lines().last(), shown.lines().last(), "same CA");
    let key = tmp.path().join("certs/ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Server::try_start(tmp.path(), &cfg)
        .err()
        .expect("must refuse to start");
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn bad_config_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.yaml");
    std::fs::write(&cfg, "proxy:\n  lisen: 127.0.0.1:1\n").unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("-c")
        .arg(&cfg)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen") && err.contains("c.yaml"), "{err}");
}
