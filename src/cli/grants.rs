//! `clawser grants ...` and `clawser secrets check`.

use super::backend::Backend;
use super::commands::print_json;
use super::{GrantsCmd, SecretsCmd};
use crate::config::Config;
use crate::error::Result;
use crate::grant::{NewGrant, Secrets};

fn line(g: &serde_json::Value) -> String {
    let s = |k: &str| g[k].as_str().unwrap_or("-").to_string();
    let list = |k: &str| {
        g["scope"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "*".to_string())
    };
    format!(
        "{:<22} {:<9} {}={:<16} hosts={} repos={} envs={} actions={} secret={} uses={}/{} expires={} by={}",
        s("id"),
        s("state"),
        g["subject"]["kind"].as_str().unwrap_or("?"),
        g["subject"]["id"].as_str().unwrap_or("?"),
        list("hosts"),
        list("repos"),
        list("envs"),
        list("actions"),
        s("secret"),
        g["uses"],
        g["max_uses"].as_u64().map_or("∞".to_string(), |m| m.to_string()),
        s("expires_at"),
        s("issued_by"),
    )
}

/// `clawser grants ...`: through the running server's admin API, else the data dir.
pub async fn grants(config: &Config, cmd: GrantsCmd, token: Option<String>) -> Result<i32> {
    let b = match Backend::remote(config, token).await? {
        Some(c) => Backend::Remote(Box::new(c)),
        None => Backend::connect(config).await?,
    };
    match cmd {
        GrantsCmd::Add {
            agent,
            role,
            job,
            hosts,
            repos,
            envs,
            actions,
            secret,
            expires,
            max_uses,
            reason,
        } => {
            let new = NewGrant {
                agent,
                role,
                job,
                hosts,
                repos,
                envs,
                actions,
                secret,
                expires,
                max_uses,
                reason,
            };
            let g = b.add_grant(new, &config.secrets).await?;
            println!("issued {} via {}", line(&g), b.describe());
        }
        GrantsCmd::List { all, json } => {
            let list = b.grants(all).await?;
            if json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no {}grants", if all { "" } else { "active " });
            } else {
                for g in &list {
                    println!("{}", line(g));
                }
            }
        }
        GrantsCmd::Show { id } => print_json(&b.grant(&id).await?),
        GrantsCmd::Revoke { id } => {
            let g = b.revoke_grant(&id).await?;
            println!("revoked {}", line(&g));
        }
    }
    Ok(0)
}

/// `clawser secrets check`: reads each source, prints `ok` or the error (never a value).
pub fn secrets(config: &Config, cmd: SecretsCmd) -> Result<i32> {
    match cmd {
        SecretsCmd::Check => {
            if config.secrets.is_empty() {
                println!("no secrets are configured ({})", config.source);
                return Ok(0);
            }
            let mut failed = 0;
            for (name, result) in Secrets::check(&config.secrets) {
                match result {
                    Ok(()) => println!("ok    {name}"),
                    Err(e) => {
                        failed += 1;
                        println!("FAIL  {e}");
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
    }
}
