//! The grant records: who a grant is for (`Subject`), what it covers (`Scope`), and the
//! stored `Grant` with its expiry and uses (DESIGN.md section 3).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Who holds a grant: one agent, every agent with a role, or whoever holds a job now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `agent`, `role` or `job`.
    pub kind: SubjectKind,
    /// The agent id, role name or job id.
    pub id: String,
}

/// The kinds of grant subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    Agent,
    Role,
    Job,
}

impl SubjectKind {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Agent => "agent",
            SubjectKind::Role => "role",
            SubjectKind::Job => "job",
        }
    }
}

/// What a grant covers. An empty list means "any"; hosts and repositories are globs
/// (`*.example.com`, `acme/*`), lower-case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    /// What the policy may treat as granted (`granted("deploy")`); `*` grants every action.
    #[serde(default)]
    pub actions: Vec<String>,
}

/// A permission grant, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `grt_<hex>`, or `grt_<name>` for grants declared in the config.
    pub id: String,
    pub subject: Subject,
    pub scope: Scope,
    /// The secret this grant lets its holder use through a placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// RFC 3339; absent means no expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// Requests forwarded under this grant.
    #[serde(default)]
    pub uses: u64,
    /// The principal that issued it: `admin`, an approver id, or `config`.
    pub issued_by: String,
    #[serde(default)]
    pub reason: String,
    pub created_at: String,
    /// `config`, `api` or `approval`.
    pub source: String,
    /// The approval that issued it (`approve --grant-for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// Set once `grant.expired` or `grant.exhausted` was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

/// Where a grant stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantState {
    Active,
    Expired,
    Exhausted,
    Revoked,
}

impl GrantState {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::Expired => "expired",
            GrantState::Exhausted => "exhausted",
            GrantState::Revoked => "revoked",
        }
    }
}

impl Grant {
    /// The expiry as a time; an unparsable stored value counts as already expired.
    pub fn expiry(&self) -> Option<OffsetDateTime> {
        self.expires_at.as_deref().map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        })
    }

    /// The state at `now`, counting `pending` uses not yet committed.
    pub fn state(&self, now: OffsetDateTime, pending: u64) -> GrantState {
        if self.revoked_at.is_some() {
            GrantState::Revoked
        } else if self.expiry().is_some_and(|e| now >= e) {
            GrantState::Expired
        } else if self
            .max_uses
            .is_some_and(|m| self.uses.saturating_add(pending) >= m)
        {
            GrantState::Exhausted
        } else {
            GrantState::Active
        }
    }

    /// Uses left (`None`: unlimited).
    pub fn uses_left(&self) -> Option<u64> {
        self.max_uses.map(|m| m.saturating_sub(self.uses))
    }
}

/// A grant to issue, as posted to `/v1/grants` or built by `clawser grants add`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// Exactly one of `agent`, `role`, `job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// How long from now: `2h`, `30m`, `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    #[serde(default)]
    pub reason: String,
}

impl NewGrant {
    /// The one subject named, or an error saying what is wrong.
    pub fn subject(&self) -> Result<Subject, String> {
        let named: Vec<Subject> = [
            (SubjectKind::Agent, &self.agent),
            (SubjectKind::Role, &self.role),
            (SubjectKind::Job, &self.job),
        ]
        .into_iter()
        .filter_map(|(kind, id)| {
            id.as_ref().map(|id| Subject {
                kind,
                id: id.trim().to_string(),
            })
        })
        .collect();
        match named.as_slice() {
            [one] if !one.id.is_empty() => Ok(one.clone()),
            [_] => Err("the subject id must not be empty".to_string()),
            _ => Err("name exactly one subject: agent, role or job".to_string()),
        }
    }
}

/// A grant as policies see it in `input.grants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantView {
    pub id: String,
    pub subject: Subject,
    pub scope: Scope,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub expires_at: Option<String>,
    /// `null` when unlimited.
    pub uses_left: Option<u64>,
    pub issued_by: String,
}

impl GrantView {
    /// The view of one grant.
    pub fn of(g: &Grant) -> GrantView {
        GrantView {
            id: g.id.clone(),
            subject: g.subject.clone(),
            scope: g.scope.clone(),
            secret: g.secret.clone(),
            expires_at: g.expires_at.clone(),
            uses_left: g.uses_left(),
            issued_by: g.issued_by.clone(),
        }
    }
}

/// The wall clock grants are judged by; tests drive their own.
pub trait Clock: Send + Sync {
    /// Now, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that starts at the wall time of its creation and advances with tokio's clock,
/// so tests with paused time (`tokio::time::advance`) move grant expiry deterministically.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// Starts now.
    pub fn new() -> TokioClock {
        TokioClock {
            wall: OffsetDateTime::now_utc(),
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.wall + self.start.elapsed()
    }
}
