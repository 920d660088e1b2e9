//! Streaming is never buffered: a server-sent-events response (what every model API streams)
//! reaches the client event by event, and a large download flows through. The upstream
//! holds back its second event until the test has seen the first one through Clawser, so
//! the test fails if Clawser waits for the end of a response (no timing is asserted).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use common::World;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_one_by_one_and_big_bodies_flow() {
    let w = World::new().await;
    let dir = w.tmp.path();
    let gate = dir.join("release-second-event");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sse_server.py");
    let mut server = Command::new("python3")
        .arg(script)
        .arg(dir.join("upstream-leaf.pem"))
        .arg(dir.join("upstream-leaf.key"))
        .arg(&gate)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _server = Kill(server);
    let port: u16 = line.trim().parse().unwrap();
    let env = w.server.env_for("dev", None);

    // curl -N prints each chunk as it comes.
    let mut cmd = Command::new("curl");
    for v in common::INHERITED_NETWORK_VARS {
        cmd.env_remove(v);
    }
    let mut curl = cmd
        .envs(&env)
        .args(["-sS", "-N", "--max-time", "60"])
        .arg(format!("https://localhost:{port}/events"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(curl.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "data: one");
    // The upstream has not finished (it waits for the gate), yet the first event is here.
    assert!(!gate.exists());
    std::fs::write(&gate, "").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: two"), "{rest:?}");
    assert!(curl.wait().unwrap().success());

    // 64 MiB streams through whole.
    let mut cmd = Command::new("curl");
    for v in common::INHERITED_NETWORK_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
        .envs(&env)
        .args([
            "-sS",
            "--max-time",
            "120",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
        ])
        .arg(format!("https://localhost:{port}/big"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (64 * 1024 * 1024).to_string(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
