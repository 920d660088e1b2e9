//! Which grants apply: the subject matches the caller, and the scope covers the request.
//! Pure functions over plain data, so every rule is a table-driven unit test.

use super::types::{Scope, Subject, SubjectKind};
use crate::policy::glob_match;

/// The caller, as grant subjects see it.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub agent: &'a str,
    pub roles: &'a [String],
    /// The job the caller's credential is bound to, with that job's current holder (the
    /// agent it was last handed to): a job's grants follow the job, so only its current
    /// holder may use them.
    pub job: Option<(&'a str, &'a str)>,
}

/// What a request touches, as grant scopes see it.
#[derive(Debug, Clone, Copy)]
pub struct Touches<'a> {
    /// Lower-case host.
    pub host: &'a str,
    /// `owner/name`, lower-case, when the path names a repository.
    pub repo: Option<&'a str>,
    /// `target.env`.
    pub env: &'a str,
}

/// True when `subject` is the caller.
pub fn subject_matches(subject: &Subject, who: &Holder<'_>) -> bool {
    match subject.kind {
        SubjectKind::Agent => subject.id == who.agent,
        SubjectKind::Role => who.roles.contains(&subject.id),
        SubjectKind::Job => who
            .job
            .is_some_and(|(job, holder)| job == subject.id && holder == who.agent),
    }
}

/// True when `scope` covers the request (an empty list covers anything).
pub fn covers(scope: &Scope, req: &Touches<'_>) -> bool {
    let host_ok = scope.hosts.is_empty() || scope.hosts.iter().any(|g| glob_match(g, req.host));
    let repo_ok = scope.repos.is_empty()
        || req
            .repo
            .is_some_and(|r| scope.repos.iter().any(|g| glob_match(g, r)));
    let env_ok = scope.envs.is_empty() || scope.envs.iter().any(|e| e == req.env);
    host_ok && repo_ok && env_ok
}

/// True when `host` (lower-case) is one of `globs`.
pub fn host_allowed(globs: &[String], host: &str) -> bool {
    globs.iter().any(|g| glob_match(g, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn subjects() {
        let roles = s(&["dev"]);
        let holder = Holder {
            agent: "oc-1",
            roles: &roles,
            job: Some(("job_1", "oc-1")),
        };
        let handed_away = Holder {
            job: Some(("job_1", "hermes-2")),
            ..holder
        };
        let subj = |kind, id: &str| Subject {
            kind,
            id: id.to_string(),
        };
        let cases = [
            (subj(SubjectKind::Agent, "oc-1"), holder, true),
            (subj(SubjectKind::Agent, "oc-2"), holder, false),
            (subj(SubjectKind::Role, "dev"), holder, true),
            (subj(SubjectKind::Role, "ops"), holder, false),
            (subj(SubjectKind::Job, "job_1"), holder, true),
            (subj(SubjectKind::Job, "job_2"), holder, false),
            // The job was handed to someone else: its grants went with it.
            (subj(SubjectKind::Job, "job_1"), handed_away, false),
        ];
        for (i, (subject, who, want)) in cases.iter().enumerate() {
            assert_eq!(subject_matches(subject, who), *want, "case {i}");
        }
    }

    #[test]
    fn scopes() {
        let scope = Scope {
            hosts: s(&["api.github.com", "*.example.com"]),
            repos: s(&["acme/*"]),
            envs: s(&["staging"]),
            actions: vec![],
        };
        let t = |host, repo, env| Touches { host, repo, env };
        let cases = [
            (t("api.github.com", Some("acme/api"), "staging"), true),
            (t("x.example.com", Some("acme/web"), "staging"), true),
            (t("api.github.com", Some("other/api"), "staging"), false),
            (t("api.github.com", None, "staging"), false),
            (t("api.github.com", Some("acme/api"), "production"), false),
            (t("evil.com", Some("acme/api"), "staging"), false),
            (
                t("example.com.evil.net", Some("acme/api"), "staging"),
                false,
            ),
        ];
        for (i, (req, want)) in cases.iter().enumerate() {
            assert_eq!(covers(&scope, req), *want, "case {i}");
        }
        assert!(covers(&Scope::default(), &t("any", None, "production")));
    }
}
