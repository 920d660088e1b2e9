//! The authority parts of the config: `secrets:` (named credentials Clawser holds and
//! injects) and `grants:` (grants declared for a fixed team).

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

use super::raw::{RawGrant, RawInject, RawSecret};
use super::Validator;
use crate::error::Result;
use crate::grant::{check_host_glob, Scope, Subject, SubjectKind};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable of the `clawser serve` process.
    Env(String),
    /// A file (first line, trimmed).
    File(PathBuf),
    /// A command's stdout (`sh -c`), re-run after `ttl`.
    Command { cmd: String, ttl: Duration },
}

/// How a secret is presented to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inject {
    /// `Authorization: Bearer <value>`.
    Bearer,
    /// `Authorization: Basic x-access-token:<value>` (git over HTTPS).
    Basic,
    /// A header; `format` has `{value}` where the value goes.
    Header { name: HeaderName, format: String },
    /// A query parameter.
    Query(String),
    /// AWS SigV4: requests signed with the placeholder key id are re-signed with the real
    /// key. The value is `KEY_ID:SECRET[:SESSION_TOKEN]` or the JSON of
    /// `aws configure export-credentials --format process`.
    Aws,
}

/// One configured secret (the value is never in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDecl {
    pub name: String,
    pub from: SecretSource,
    /// Lower-case host globs the value may be sent to.
    pub hosts: Vec<String>,
    pub inject: Inject,
    /// Variables `clawser env` fills with the placeholder.
    pub env: Vec<String>,
    /// Also add the credential to a request to one of `hosts` that carries none, when the
    /// caller holds a grant for it.
    pub add: bool,
}

/// A grant declared in the config (stored as `grt_<name>`, issued by `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantDecl {
    pub name: String,
    pub subject: Subject,
    pub scope: Scope,
    pub secret: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub max_uses: Option<u64>,
    pub reason: String,
}

fn env_name_ok(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Validator<'_> {
    pub(super) fn secrets(&self, raw: Vec<RawSecret>) -> Result<Vec<SecretDecl>> {
        let mut out: Vec<SecretDecl> = Vec::new();
        for (i, s) in raw.into_iter().enumerate() {
            let key = format!("secrets[{i}]");
            crate::identity::validate_slug(&s.name)
                .map_err(|m| self.err(&format!("{key}.name"), m))?;
            if out.iter().any(|d| d.name == s.name) {
                return Err(self.err(
                    &format!("{key}.name"),
                    format!("{:?} is declared twice", s.name),
                ));
            }
            let f = s.from;
            let from = match (f.env, f.file, f.command) {
                (Some(v), None, None) if f.ttl.is_none() => SecretSource::Env(v),
                (None, Some(p), None) if f.ttl.is_none() => {
                    SecretSource::File(self.path(Some(p), ""))
                }
                (None, None, Some(cmd)) => SecretSource::Command {
                    cmd,
                    ttl: self.duration(&format!("{key}.from.ttl"), f.ttl, "55m")?,
                },
                _ => {
                    return Err(self.err(
                        &format!("{key}.from"),
                        "give exactly one of env, file or command (ttl only with command)",
                    ))
                }
            };
            let hosts = super::lower(s.hosts);
            if hosts.is_empty() {
                return Err(self.err(
                    &format!("{key}.hosts"),
                    "list the hosts this secret may be sent to",
                ));
            }
            for h in &hosts {
                check_host_glob(h).map_err(|m| self.err(&format!("{key}.hosts"), m))?;
            }
            let inject = match s.inject {
                None => Inject::Bearer,
                Some(RawInject::Name(n)) => match n.as_str() {
                    "bearer" => Inject::Bearer,
                    "basic" => Inject::Basic,
                    "aws" => Inject::Aws,
                    other => {
                        return Err(self.err(
                            &format!("{key}.inject"),
                            format!(
                            "{other:?} is not bearer, basic, {{header: NAME}} or {{query: NAME}}"
                        ),
                        ))
                    }
                },
                Some(RawInject::Header { header, format }) => {
                    let name = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
                        .map_err(|_| {
                            self.err(
                                &format!("{key}.inject.header"),
                                format!("{header:?} is not a header name"),
                            )
                        })?;
                    if matches!(
                        name.as_str(),
                        "host" | "proxy-authorization" | "content-length" | "transfer-encoding"
                    ) {
                        return Err(self.err(
                            &format!("{key}.inject.header"),
                            format!("{header:?} cannot carry a secret"),
                        ));
                    }
                    let format = format.unwrap_or_else(|| "{value}".to_string());
                    if !format.contains("{value}") {
                        return Err(
                            self.err(&format!("{key}.inject.format"), "must contain {value}")
                        );
                    }
                    Inject::Header { name, format }
                }
                Some(RawInject::Query { query }) => {
                    if query.is_empty() {
                        return Err(self.err(&format!("{key}.inject.query"), "must not be empty"));
                    }
                    Inject::Query(query)
                }
            };
            for n in &s.env {
                if !env_name_ok(n) {
                    return Err(self.err(
                        &format!("{key}.env"),
                        format!("{n:?} is not a variable name"),
                    ));
                }
            }
            let add = s.add.unwrap_or(false);
            if add && inject == Inject::Aws {
                return Err(self.err(
                    &format!("{key}.add"),
                    "an aws secret cannot be added to unsigned requests; the agent signs with its placeholder",
                ));
            }
            out.push(SecretDecl {
                name: s.name,
                from,
                hosts,
                inject,
                env: s.env,
                add,
            });
        }
        Ok(out)
    }

    pub(super) fn grants(
        &self,
        raw: Vec<RawGrant>,
        secrets: &[SecretDecl],
    ) -> Result<Vec<GrantDecl>> {
        let mut out: Vec<GrantDecl> = Vec::new();
        for (i, g) in raw.into_iter().enumerate() {
            let key = format!("grants[{i}]");
            crate::identity::validate_slug(&g.name)
                .map_err(|m| self.err(&format!("{key}.name"), m))?;
            if out.iter().any(|d| d.name == g.name) {
                return Err(self.err(
                    &format!("{key}.name"),
                    format!("{:?} is declared twice", g.name),
                ));
            }
            let subject = match (g.agent, g.role, g.job) {
                (Some(id), None, None) => Subject {
                    kind: SubjectKind::Agent,
                    id,
                },
                (None, Some(id), None) => Subject {
                    kind: SubjectKind::Role,
                    id,
                },
                (None, None, Some(id)) => Subject {
                    kind: SubjectKind::Job,
                    id,
                },
                _ => return Err(self.err(&key, "name exactly one of agent, role or job")),
            };
            let mut hosts = super::lower(g.hosts);
            for h in &hosts {
                check_host_glob(h).map_err(|m| self.err(&format!("{key}.hosts"), m))?;
            }
            if let Some(name) = &g.secret {
                let Some(d) = secrets.iter().find(|d| &d.name == name) else {
                    return Err(self.err(
                        &format!("{key}.secret"),
                        format!("no secret {name:?} is declared"),
                    ));
                };
                if hosts.is_empty() {
                    hosts = d.hosts.clone();
                } else if let Some(h) = hosts.iter().find(|h| !d.hosts.contains(h)) {
                    return Err(self.err(
                        &format!("{key}.hosts"),
                        format!("{h:?} is not one of secret {name:?}'s hosts"),
                    ));
                }
            }
            let expires_at = match g.expires_at {
                None => None,
                Some(t) => {
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .map_err(|_| {
                            self.err(
                                &format!("{key}.expires_at"),
                                format!("{t:?} is not an RFC 3339 time"),
                            )
                        })?;
                    Some(t)
                }
            };
            if g.max_uses == Some(0) {
                return Err(self.err(&format!("{key}.max_uses"), "must be greater than 0"));
            }
            out.push(GrantDecl {
                name: g.name,
                subject,
                scope: Scope {
                    hosts,
                    repos: super::lower(g.repos),
                    envs: g.envs,
                    actions: g.actions,
                },
                secret: g.secret,
                expires_at,
                max_uses: g.max_uses,
                reason: g.reason.unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
