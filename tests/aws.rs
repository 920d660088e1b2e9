//! AWS SigV4 with placeholders: botocore signs with the placeholder keys `clawser env`
//! exports, Clawser re-signs with the real key, and an independent botocore verifier
//! upstream accepts the signature. Needs python3 with botocore (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use common::{base_config, run_with_env, Server, Upstream};

const KEY: &str = "AKIDREALKEY1234567";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYREALKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEREALSESSIONTOKEN";

struct Verifier(std::process::Child, u16);

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn verifier(dir: &std::path::Path) -> Verifier {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sigv4_server.py"
    );
    let (cert, key) = (dir.join("upstream-leaf.pem"), dir.join("upstream-leaf.key"));
    let mut child = Command::new("python3")
        .args([script, KEY, SECRET, TOKEN])
        .arg(&cert)
        .arg(&key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("verifier did not start (is botocore installed?): {line:?}"));
    Verifier(child, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placeholder_signed_aws_request_is_resigned_with_the_real_key() {
    let tmp = tempfile::tempdir().unwrap();
    // Its certificate (for 127.0.0.1) is what the verifier serves too.
    let upstream = Upstream::start(tmp.path()).await;
    let v = verifier(tmp.path());
    let creds = tmp.path().join("aws.creds");
    std::fs::write(&creds, format!("{KEY}:{SECRET}:{TOKEN}\n")).unwrap();
    let cfg = format!(
        "{}secrets:\n  - name: aws\n    from: {{file: {}}}\n    hosts: [127.0.0.1]\n    inject: aws\n",
        base_config(tmp.path(), &upstream, ""),
        creds.display()
    );
    let s = Server::start(tmp.path(), &cfg);
    s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", "aws"]);
    let env = s.env_for("dev", None);
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(env[k].starts_with("clwp_"), "{k}={}", env[k]);
    }
    let all = serde_json::to_string(&env).unwrap();
    assert!(!all.contains(KEY) && !all.contains(SECRET) && !all.contains(TOKEN));

    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sigv4_client.py"
    );
    let url = format!("https://127.0.0.1:{}/things", v.1);
    let out = run_with_env("python3", &[client, &url], &env).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("200"),
        "{text}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    assert!(text.contains("\"ok\": true"), "{text}");
    // The verifier echoed the Authorization it got: the real key id is masked for the agent.
    for real in [KEY, SECRET, TOKEN] {
        assert!(!text.contains(real), "{real} reached the agent: {text}");
    }

    // Signed as UNSIGNED-PAYLOAD: Clawser signs the body it saw instead (the verifier checks
    // the hash against the body, as S3 does).
    let out = run_with_env("python3", &[client, &url, "unsigned-payload"], &env).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("200") && text.contains("\"ok\": true"),
        "{text}"
    );

    // The same placeholder signature to a host the secret does not allow: refused.
    let other = format!("https://localhost:{}/things", v.1);
    let out = run_with_env("python3", &[client, &other], &env).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with("403") && text.contains("placeholder_misuse"),
        "{text}"
    );

    // Nothing Clawser wrote holds the real values.
    let export = tmp.path().join("export.jsonl");
    s.cli_ok(&["ledger", "export", "--out", export.to_str().unwrap()]);
    let written = std::fs::read_to_string(&export).unwrap() + &s.log_text();
    for real in [KEY, SECRET, TOKEN] {
        assert!(!written.contains(real), "{real} was written");
    }
}
