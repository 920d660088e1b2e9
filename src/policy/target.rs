//! `target.env`: which environment a request touches, from the config's environment map,
//! so staging-versus-production boundaries live in Clawser, not in each runtime.

use serde::Serialize;

use crate::config::Environments;

/// What a request targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// e.g. `production`, `staging`, `development`.
    pub env: String,
    /// The rule's service name, else the host.
    pub service: String,
}

/// Classifies `host` + `path`: the first rule whose host and path globs match wins.
pub fn classify(envs: &Environments, host: &str, path: &str) -> Target {
    for rule in &envs.rules {
        let host_ok = rule.hosts.is_empty() || rule.hosts.iter().any(|g| glob_match(g, host));
        let path_ok = rule.paths.is_empty() || rule.paths.iter().any(|g| glob_match(g, path));
        if host_ok && path_ok {
            return Target {
                env: rule.env.clone(),
                service: rule.service.clone().unwrap_or_else(|| host.to_string()),
            };
        }
    }
    Target {
        env: envs.default.clone(),
        service: host.to_string(),
    }
}

/// Glob matching where `*` matches any run of characters (including none); everything else
/// matches itself. Linear time (greedy with one backtrack point).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvRule;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*.prod.example.com", "api.prod.example.com", true),
            ("*.prod.example.com", "prod.example.com", false),
            ("prod.*", "prod.acme.io", true),
            ("api.github.com", "api.github.com", true),
            ("api.github.com", "api.github.co", false),
            ("/repos/acme/*", "/repos/acme/api/pulls", true),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ] {
            assert_eq!(glob_match(p, t), want, "{p} {t}");
        }
    }

    #[test]
    fn first_rule_wins_then_default() {
        let envs = Environments {
            default: "development".into(),
            rules: vec![
                EnvRule {
                    env: "production".into(),
                    hosts: vec!["api.github.com".into()],
                    paths: vec!["/repos/acme/api/*".into()],
                    service: Some("github".into()),
                },
                EnvRule {
                    env: "staging".into(),
                    hosts: vec!["*.staging.acme.io".into()],
                    paths: vec![],
                    service: None,
                },
            ],
        };
        let t = classify(&envs, "api.github.com", "/repos/acme/api/pulls/7/merge");
        assert_eq!(
            (t.env.as_str(), t.service.as_str()),
            ("production", "github")
        );
        assert_eq!(
            classify(&envs, "api.github.com", "/user").env,
            "development"
        );
        assert_eq!(
            classify(&envs, "deploy.staging.acme.io", "/").env,
            "staging"
        );
    }
}
