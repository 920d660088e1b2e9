//! `proxy.shards`: the proxy's TCP listener served by single-threaded runtimes of its own
//! (`shards: N`) or by the shared runtime (`shards: 0`, the default). Every layout serves,
//! decides and records the same, spreads connections over every shard, shares one connection
//! limit, and stops cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{curl, Server, World};

/// The `request.decided` entries of the ledger whose line mentions `path`.
fn decided(s: &Server, path: &str) -> usize {
    s.cli_ok(&["ledger", "tail", "-n", "1000"])
        .lines()
        .filter(|l| l.contains("request.decided") && l.contains(path))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_shard_layout_serves_decides_records_and_stops() {
    for n in [0usize, 1, 3] {
        let mut w = World::with_proxy_extra(&format!("  shards: {n}\n")).await;
        let start = w
            .server
            .log_text()
            .lines()
            .find(|l| l.contains("clawser is running"))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .unwrap();
        assert_eq!(start["shards"], n, "{start}");
        let env = w.server.env_for("dev", None);
        // Each curl is a connection of its own: with shards, they land on different ones.
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (env, url) = (
                env.clone(),
                w.upstream.url(&format!("/repos/acme/s{n}-{i}")),
            );
            tasks.push(tokio::spawn(
                async move { curl(&env, &[url.as_str()]).await },
            ));
        }
        for t in tasks {
            let (code, body) = t.await.unwrap();
            assert_eq!(code, 200, "shards {n}: {body}\n{}", w.server.log_text());
        }
        // A denied request is refused by whichever shard takes it, and never forwarded.
        let (code, _) = curl(
            &env,
            &["-X", "DELETE", w.upstream.url("/repos/acme/api").as_str()],
        )
        .await;
        assert_eq!(code, 403, "shards {n}");
        assert_eq!(w.upstream.hits(), 6, "shards {n}");
        assert_eq!(decided(&w.server, &format!("/repos/acme/s{n}-")), 6);
        // Every shard served some of the 7 connections (the acceptor hands each to the shard
        // with the fewest live ones, equals in turn).
        let token = w.server.admin_token();
        let (code, metrics) = curl(
            &Default::default(),
            &[
                "-H",
                &format!("Authorization: Bearer {token}"),
                &format!("http://{}/metrics", w.server.admin),
            ],
        )
        .await;
        assert_eq!(code, 200, "{metrics}");
        let handed: Vec<u64> = metrics
            .lines()
            .filter(|l| l.starts_with("clawser_shard_connections_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(handed.len(), n, "shards {n}: {metrics}");
        if n > 0 {
            assert_eq!(handed.iter().sum::<u64>(), 7, "shards {n}: {handed:?}");
            assert!(handed.iter().all(|&c| c > 0), "shards {n}: {handed:?}");
        }
        let status = w.server.terminate();
        assert!(
            status.success(),
            "shards {n}: {status}\n{}",
            w.server.log_text()
        );
        assert!(
            w.server.log_text().contains("clawser stopped"),
            "shards {n}: {}",
            w.server.log_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_is_one_limit_across_shards() {
    // With a limit per shard, two shards would hold four connections: at least one of the
    // extra attempts below would land on a shard with room.
    let w =
        World::with_proxy_extra("  shards: 2\n  max_connections: 2\n  first_bytes_timeout: 30s\n")
            .await;
    let target = format!("localhost:{}", w.upstream.port());
    let env = w.server.env_for("dev", None);
    let mut open = Vec::new();
    for _ in 0..2 {
        let (s, head) = w.server.tunnel(&env, "dev", &target);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(s);
    }
    for i in 0..4 {
        // Refused means closed at once (the read timeout is 10 s).
        let began = Instant::now();
        let (s, head) = w.server.tunnel(&env, "dev", &target);
        assert_eq!(head, "", "extra connection {i} got an answer: {head}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "extra connection {i} was left hanging, not refused"
        );
        open.push(s);
    }
}
