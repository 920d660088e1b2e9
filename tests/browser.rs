//! The approval inbox in a real browser: Debian's Chromium, headless, driven through
//! ChromeDriver's WebDriver API. It logs in with an approver token, sees a held request
//! appear live, approves it, and the agent's request completes.
//!
//! Needs `chromium` and `chromedriver` (`.ci/run` installs them); set CHROMEDRIVER /
//! CHROMIUM to other paths. Without them the test fails (it must be able to fail), unless
//! CLAWSER_SKIP_BROWSER=1 says to skip it on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{base_config, curl, Server, Upstream, INHERITED_NETWORK_VARS};
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: std::process::Child,
    base: String,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::process::Command::new("curl")
            .args([
                "-s",
                "-X",
                "DELETE",
                &format!("{}/session/{}", self.base, self.session),
            ])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wd(base: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let url = format!("{base}{path}");
    let data = body.map(|b| b.to_string());
    let mut args = vec![
        "-X",
        method,
        "-H",
        "Content-Type: application/json",
        url.as_str(),
    ];
    if let Some(d) = &data {
        args.extend(["-d", d.as_str()]);
    }
    let (_, text) = curl(&HashMap::new(), &args).await;
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("webdriver {method} {path}: {text}"))
}

impl Driver {
    async fn start(profile: &std::path::Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver =
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut cmd = std::process::Command::new(&driver);
        cmd.arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for k in INHERITED_NETWORK_VARS {
            cmd.env_remove(k);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver} ({e}); install chromium and chromium-driver, or set CLAWSER_SKIP_BROWSER=1"));
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, _) = curl(&HashMap::new(), &[&format!("{base}/status")]).await;
            if code == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--no-first-run", "--no-default-browser-check",
                         "--no-proxy-server", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v = wd(&base, "POST", "/session", Some(caps)).await;
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Driver {
            child,
            base,
            session,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        wd(
            &self.base,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        )
        .await
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    /// Waits for an element matching `css` (the page updates live).
    async fn find(&self, css: &str, timeout: Duration) -> String {
        match self.try_find(css, timeout).await {
            Ok(id) => id,
            Err(v) => panic!("no element {css}: {v}"),
        }
    }

    /// Like `find`, but returns the driver's last answer when nothing matched in time.
    async fn try_find(&self, css: &str, timeout: Duration) -> Result<String, Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self
                .call(
                    "POST",
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v["value"][ELEMENT].as_str() {
                return Ok(id.to_string());
            }
            if Instant::now() >= deadline {
                return Err(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, el: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn clear(&self, el: &str) {
        self.call("POST", &format!("/element/{el}/clear"), Some(json!({})))
            .await;
    }

    async fn click(&self, el: &str) {
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})))
            .await;
    }

    async fn text(&self, el: &str) -> String {
        self.call("GET", &format!("/element/{el}/text"), None).await["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approve_a_held_request_in_the_web_page() {
    if std::env::var("CLAWSER_SKIP_BROWSER").as_deref() == Ok("1") {
        eprintln!("CLAWSER_SKIP_BROWSER=1: browser test skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let cfg = format!(
        "{}approvers:\n  - id: bob\n    roles: [release-approver]\n",
        base_config(tmp.path(), &upstream, "")
    );
    let server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    let token = common::gate::approver_token(&server, "bob");

    let driver = Driver::start(&tmp.path().join("chromium-profile")).await;
    driver.goto(&format!("http://{}/", server.admin)).await;
    let field = driver.find("#token", Duration::from_secs(10)).await;
    driver.type_into(&field, &token).await;
    driver
        .click(&driver.find("#login", Duration::from_secs(5)).await)
        .await;
    driver
        .find("#inbox-view:not(.hidden)", Duration::from_secs(10))
        .await;
    let who = driver
        .text(&driver.find("#whoami", Duration::from_secs(5)).await)
        .await;
    assert!(who.contains("bob"), "{who}");

    // The agent's request is held after the page is open: it appears live.
    let agent = {
        let (env, url) = (env.clone(), upstream.url("/prod/deploy"));
        tokio::spawn(async move {
            curl(
                &env,
                &[
                    "-X",
                    "POST",
                    "-d",
                    r#"{"release":"2.0-canary-marker","password":"hunter2"}"#,
                    "-H",
                    "X-Clawser-Intent: roll out 2.0",
                    url.as_str(),
                ],
            )
            .await
        })
    };
    let card = match driver
        .try_find(".approval[data-state=pending]", Duration::from_secs(20))
        .await
    {
        Ok(card) => card,
        Err(v) => {
            // Say everything that could explain it: the page, the agent's answer, the log.
            let body = driver.find("body", Duration::from_secs(5)).await;
            let page = driver.text(&body).await;
            let api = std::process::Command::new("curl")
                .args(["-sS", "-H", &format!("Authorization: Bearer {token}")])
                .arg(format!("http://{}/v1/approvals", server.admin))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            agent.abort();
            panic!(
                "no pending card: {v}\npage: {page}\napprovals: {api}\nlog: {}",
                server.log_text()
            );
        }
    };
    let text = driver.text(&card).await;
    for want in [
        "POST",
        "/prod/deploy",
        "dev",
        "alice",
        "claude-code",
        "production_write",
        "roll out 2.0",
        "Body preview",
        "2.0-canary-marker",
    ] {
        assert!(text.contains(want), "{want} not shown in: {text}");
    }
    assert!(!text.contains("hunter2"), "a secret shown in: {text}");
    assert_eq!(upstream.hits(), 0);
    let reason = driver
        .find(
            ".approval[data-state=pending] input.reason",
            Duration::from_secs(5),
        )
        .await;
    driver.type_into(&reason, "checked in the browser").await;
    // Approve for a window: the page also issues a grant scoped to this request.
    driver
        .click(
            &driver
                .find(
                    ".approval[data-state=pending] select.window option[value='1h']",
                    Duration::from_secs(5),
                )
                .await,
        )
        .await;
    driver
        .click(
            &driver
                .find(
                    ".approval[data-state=pending] button.approve",
                    Duration::from_secs(5),
                )
                .await,
        )
        .await;

    let (code, body) = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(upstream.hits(), 1);
    // The page shows it decided.
    let done = driver
        .find(
            "#recent .approval[data-state=consumed]",
            Duration::from_secs(10),
        )
        .await;
    assert!(driver.text(&done).await.contains("checked in the browser"));
    grants_view(&driver, &server, &token).await;
}

/// After `approve_a_held_request_in_the_web_page`'s approval: the grants view.
async fn grants_view(driver: &Driver, server: &Server, token: &str) {
    let card = driver
        .find("#grants .grant[data-state=active]", Duration::from_secs(10))
        .await;
    let text = driver.text(&card).await;
    for want in ["production_write", "bob", "approval", "agent dev"] {
        assert!(text.contains(want), "{want} not in the grant card: {text}");
    }
    driver
        .click(
            &driver
                .find("#grants .grant button.revoke", Duration::from_secs(5))
                .await,
        )
        .await;
    driver
        .find("#grants-empty:not(.hidden)", Duration::from_secs(10))
        .await;
    let (_, all) = common::gate::admin(server, "GET", "/v1/grants?state=all", token, None).await;
    assert_eq!(all[0]["revoked_by"], "bob", "{all}");
    // Grants are otherwise issued by the admin: log in as the admin and use the form.
    driver
        .click(&driver.find("#logout", Duration::from_secs(5)).await)
        .await;
    let field = driver.find("#token", Duration::from_secs(10)).await;
    driver.clear(&field).await;
    driver.type_into(&field, &server.admin_token()).await;
    driver
        .click(&driver.find("#login", Duration::from_secs(5)).await)
        .await;
    driver
        .find("#inbox-view:not(.hidden)", Duration::from_secs(10))
        .await;
    driver
        .click(&driver.find("details summary", Duration::from_secs(5)).await)
        .await;
    driver
        .type_into(
            &driver.find("#g-subject", Duration::from_secs(5)).await,
            "dev",
        )
        .await;
    driver
        .type_into(
            &driver.find("#g-actions", Duration::from_secs(5)).await,
            "deploy",
        )
        .await;
    driver
        .type_into(
            &driver.find("#g-expires", Duration::from_secs(5)).await,
            "2h",
        )
        .await;
    driver
        .click(&driver.find("#grant-issue", Duration::from_secs(5)).await)
        .await;
    let issued = driver
        .find("#grants .grant[data-state=active]", Duration::from_secs(10))
        .await;
    let text = driver.text(&issued).await;
    assert!(
        text.contains("deploy") && text.contains("agent dev"),
        "{text}"
    );
}
