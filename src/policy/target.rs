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

/// Classifies `host` + `path` (the canonical path): the first rule whose host, path and
/// repository globs all match wins. Hosts, paths and repositories match case-insensitively
/// (GitHub names are case-insensitive; over-matching a production rule is the safe side).
pub fn classify(envs: &Environments, host: &str, path: &str) -> Target {
    let host = host.to_ascii_lowercase();
    // Read the path (and the repository it names) only when some rule looks at them.
    let by_repo = envs.rules.iter().any(|r| !r.repos.is_empty());
    let by_path = by_repo || envs.rules.iter().any(|r| !r.paths.is_empty());
    let lower_path = if by_path {
        lenient_view(path)
    } else {
        String::new()
    };
    let repo = if by_repo { repo_of(&lower_path) } else { None };
    for rule in &envs.rules {
        let host_ok = rule.hosts.is_empty() || rule.hosts.iter().any(|g| glob_match(g, &host));
        // Rule paths are lower-cased when the config is loaded.
        let path_ok =
            rule.paths.is_empty() || rule.paths.iter().any(|g| glob_match(g, &lower_path));
        let repo_ok = rule.repos.is_empty()
            || repo
                .as_deref()
                .is_some_and(|r| rule.repos.iter().any(|g| glob_match(g, r)));
        if host_ok && path_ok && repo_ok {
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

/// The path as the most lenient server would read it, which is what environment rules are
/// matched against: lower-case, `%2F` as a separator, `;parameters` dropped from segments
/// (Tomcat/Spring), so no spelling of a production path classifies as something else.
pub fn lenient_view(path: &str) -> String {
    path.to_ascii_lowercase()
        .replace("%2f", "/")
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/")
}

/// The repository (`owner/name`, lower-case, without `.git`) a path names: a GitHub REST
/// path (`/repos/OWNER/NAME/...`), a git smart-HTTP URL (`/OWNER/NAME.git/info/refs`,
/// `.../git-upload-pack`, `.../git-receive-pack`), else the first two segments of a web URL
/// (`/OWNER/NAME/pull/7`). Expects the canonical path.
pub fn repo_of(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let segs: Vec<&str> = lower.split('/').filter(|s| !s.is_empty()).collect();
    let pair = |o: &str, n: &str| {
        let n = n.strip_suffix(".git").unwrap_or(n);
        (!o.is_empty() && !n.is_empty()).then(|| format!("{o}/{n}"))
    };
    if segs.first() == Some(&"repos") && segs.len() >= 3 {
        return pair(segs[1], segs[2]);
    }
    for suffix in ["info", "git-upload-pack", "git-receive-pack"] {
        if let Some(i) = segs.iter().position(|s| *s == suffix) {
            if i >= 2 {
                return pair(segs[i - 2], segs[i - 1]);
            }
        }
    }
    match segs.as_slice() {
        [o, n, ..] => pair(o, n),
        _ => None,
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
                    repos: vec![],
                    service: Some("github".into()),
                },
                EnvRule {
                    env: "staging".into(),
                    hosts: vec!["*.staging.acme.io".into()],
                    paths: vec![],
                    repos: vec![],
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

    #[test]
    fn repos_are_read_from_api_and_git_paths() {
        for (path, want) in [
            ("/repos/ACME/api/pulls/7/merge", Some("acme/api")),
            ("/repos/acme/API.git", Some("acme/api")),
            ("/acme/api.git/info/refs", Some("acme/api")),
            ("/git/acme/api.git/git-receive-pack", Some("acme/api")),
            ("/ACME/Api/pull/7", Some("acme/api")),
            ("/user", None),
            ("/", None),
        ] {
            assert_eq!(repo_of(path).as_deref(), want, "{path}");
        }
    }

    #[test]
    fn repo_rules_and_case() {
        let envs = Environments {
            default: "development".into(),
            rules: vec![EnvRule {
                env: "production".into(),
                hosts: vec!["api.github.com".into(), "github.com".into()],
                paths: vec![],
                repos: vec!["acme/*".into()],
                service: Some("github".into()),
            }],
        };
        for (host, path, want) in [
            (
                "api.github.com",
                "/repos/ACME/api/pulls/7/merge",
                "production",
            ),
            (
                "API.GITHUB.COM",
                "/repos/acme/api/pulls/7/merge",
                "production",
            ),
            ("github.com", "/acme/API.git/git-receive-pack", "production"),
            ("github.com", "/Acme/api/info/refs", "production"),
            (
                "api.github.com",
                "/repos/other/api/pulls/7/merge",
                "development",
            ),
            ("api.github.com", "/user", "development"),
        ] {
            assert_eq!(classify(&envs, host, path).env, want, "{host}{path}");
        }
        let by_path = Environments {
            default: "development".into(),
            rules: vec![EnvRule {
                env: "production".into(),
                hosts: vec![],
                paths: vec!["/repos/acme/*".into()],
                repos: vec![],
                service: None,
            }],
        };
        for path in [
            "/repos/ACME/api/pulls/7/merge",
            "/repos/acme%2Fapi/pulls/7/merge",
            "/repos/acme;x=1/api/pulls/7/merge",
        ] {
            assert_eq!(
                classify(&by_path, "api.github.com", path).env,
                "production",
                "{path}"
            );
        }
    }
}
