//! Git smart HTTP, understood: which service (`upload-pack` for clone/fetch,
//! `receive-pack` for push), which repository, and for a push every ref update with its
//! kind: `create`, `delete`, `update` (a fast-forward, shown from the pushed pack) or
//! `force` (shown not to be one: the pushed history ends without reaching the old commit).
//! When the pack does not show either way, the update says `fast_forward: null`.

use serde::Serialize;

use super::pack;
use super::pktline::{self, is_zero, PktError};

/// One ref update, as policies see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefUpdate {
    #[serde(rename = "ref")]
    pub name: String,
    pub old: String,
    pub new: String,
    /// `create`, `delete`, `update` or `force`.
    pub kind: String,
    /// `true` (shown), `false` (shown not to be), `null` (the pack does not say).
    pub fast_forward: Option<bool>,
}

/// `input.git`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitView {
    /// `upload-pack` or `receive-pack`.
    pub service: String,
    /// `owner/name` (lower-case, without `.git`), when the path names one.
    pub repo: Option<String>,
    /// For a push: what it would change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ref_updates: Vec<RefUpdate>,
    /// For a push: the client asked for report-status over side-band-64k (how a refusal is
    /// answered so that git prints it).
    #[serde(skip)]
    pub sideband: bool,
    /// Ref discovery (`GET …/info/refs?service=…`), the first request of a clone, fetch
    /// or push.
    #[serde(skip)]
    pub discovery: bool,
}

/// The most inflated pack bytes read to tell fast-forwards (a bound against zip bombs).
pub const PACK_BUDGET: usize = 64 * 1024 * 1024;

/// The git view of a request, if it is git smart HTTP. `body` is the inspected body and
/// `whole` says whether it is all of it. A push whose command list cannot be read is an
/// error with the reason.
pub fn view(
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
    whole: bool,
) -> Result<Option<GitView>, PktError> {
    // Any case, a trailing slash: spelled as any server might still route it (compared
    // without allocating: this runs for every request).
    let path = path.trim_end_matches('/');
    let ends = |suffix: &str| {
        path.len() >= suffix.len()
            && path.as_bytes()[path.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    let service = if method == "POST" && ends("/git-receive-pack") {
        "receive-pack"
    } else if method == "POST" && ends("/git-upload-pack") {
        "upload-pack"
    } else if ends("/info/refs") {
        match form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "service") {
            Some((_, v)) if v == "git-receive-pack" => "receive-pack",
            Some((_, v)) if v == "git-upload-pack" => "upload-pack",
            _ => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let mut view = GitView {
        service: service.to_string(),
        repo: crate::policy::repo_of(path),
        ref_updates: Vec::new(),
        sideband: false,
        discovery: ends("/info/refs"),
    };
    if service != "receive-pack" || method != "POST" {
        return Ok(Some(view));
    }
    let (commands, pack_at) = match pktline::receive_pack_commands(body) {
        Ok(c) => c,
        Err(_) if !whole => {
            return Err(PktError(
                "the push's command list is larger than proxy.max_inspect_bytes".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    let sha256 = commands.first().is_some_and(|c| c.new.len() == 64);
    view.sideband = commands.first().is_some_and(|c| {
        c.capabilities
            .iter()
            .any(|k| k == "side-band-64k" || k == "side-band")
    });
    let needs_pack = commands
        .iter()
        .any(|c| !is_zero(&c.old) && !is_zero(&c.new));
    let parents = if needs_pack {
        pack::commits(body.get(pack_at..).unwrap_or(&[]), sha256, PACK_BUDGET)
    } else {
        pack::Parents::new()
    };
    for c in commands {
        let (kind, ff) = if is_zero(&c.old) {
            ("create", None)
        } else if is_zero(&c.new) {
            ("delete", None)
        } else {
            match pack::fast_forward(&parents, &c.old, &c.new) {
                Some(true) => ("update", Some(true)),
                Some(false) => ("force", Some(false)),
                None => ("update", None),
            }
        };
        view.ref_updates.push(RefUpdate {
            name: c.name,
            old: c.old,
            new: c.new,
            kind: kind.to_string(),
            fast_forward: ff,
        });
    }
    Ok(Some(view))
}
