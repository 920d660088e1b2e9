//! The Rego input document, version 1 (DESIGN.md section 4). Header names are lower-case and
//! secrets are already redacted in the `RequestSummary`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::target::Target;
use crate::identity::Principal;
use crate::model::{Destination, RequestSummary};

/// The agent as policies see it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView<'a> {
    pub id: &'a str,
    pub runtime: &'a str,
    pub on_behalf_of: &'a str,
    pub roles: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
}

/// The job as policies see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub agents: &'a [String],
}

/// `input` for `data.clawser.decision`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInput<'a> {
    pub version: u32,
    pub time: String,
    pub agent: AgentView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobView<'a>>,
    /// The active grants that apply to this caller and request.
    pub grants: Vec<crate::grant::GrantView>,
    pub request: &'a RequestSummary,
    /// The resolved, checked addresses the request goes to (absent for `policy eval` inputs
    /// that omit it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a Destination>,
    pub target: &'a Target,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<serde_json::Value>,
}

impl<'a> PolicyInput<'a> {
    /// Builds the input for one request.
    pub fn new(principal: &'a Principal, request: &'a RequestSummary, target: &'a Target) -> Self {
        let a = &principal.agent;
        PolicyInput {
            version: 1,
            time: crate::time::now_rfc3339(),
            agent: AgentView {
                id: &a.id,
                runtime: &a.runtime,
                on_behalf_of: &a.on_behalf_of,
                roles: &a.roles,
                labels: &a.labels,
            },
            job: principal.job.as_deref().map(|j| JobView {
                id: &j.id,
                title: &j.title,
                agents: &j.agents,
            }),
            grants: Vec::new(),
            request,
            destination: None,
            target,
            git: None,
            github: None,
        }
    }
}
