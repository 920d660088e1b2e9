//! Clawser: a transparent, policy-enforcing HTTPS proxy for developer agents.
//! **Agents execute. Clawser authorizes and records.**
//!
//! Read this file as the table of contents. Layers (DESIGN.md section 2); a module imports
//! only from its own or a lower layer, and layer 1 knows nothing of sockets.
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | 0 | [`model`] | plain data: requests, decisions, outcomes |
//! | 0 | [`error`] | the crate error, tagged by who is at fault |
//! | 0 | [`time`], [`fsutil`] | timestamps; 0600 secret files |
//! | 1 | [`config`] | YAML config, validated; embedded defaults |
//! | 1 | [`ca`] | local CA, leaf issuance, cert cache |
//! | 1 | [`approval`] | approval objects, fingerprints, N-of-M decisions, consumption, expiry |
//! | 1 | [`events`] | the live event stream (`/v1/events`, web page, webhooks) |
//! | 1 | [`identity`] | agents, credentials, jobs, approvers, the authenticator, admin token |
//! | 1 | [`grant`] | permission grants (scope, expiry, uses), secrets, placeholders, injection |
//! | 1 | [`inspect`] | protocol-aware views: GitHub REST routes, GraphQL documents |
//! | 1 | [`ledger`] | the work ledger: entries, Merkle tree, checkpoints, WAL, verifier |
//! | 1 | [`policy`] | Rego input, engine (fail closed), hot reload, policy tests |
//! | 1 | [`metrics`] | counters for `/metrics` |
//! | 1 | [`redact`] | secret redaction: key names, credential shapes, configured patterns |
//! | 1 | [`runtime_env`] | the exports `clawser env` prints |
//! | 2 | [`tls`] | ClientHello peek, interception acceptor, upstream client config |
//! | 2 | [`proxy`] | listener, CONNECT, destinations (resolve, classify, canonicalize), pipeline, responses |
//! | 2 | [`admin`] | admin API, approval inbox web page, and the API's client |
//! | 2 | [`notify`] | webhook delivery with retries |
//! | 2 | [`sandbox`] | `clawser run --isolate`: bubblewrap plan, in-sandbox relay to the proxy |
//! | 3 | [`app`] | composition root: builds the components, owns shutdown |
//! | 3 | [`cli`] | the `clawser` command line |

// Without regorus's counting allocator no policy memory limit is enforced: only on purpose.
#[cfg(not(any(feature = "mimalloc", feature = "heap-profile")))]
compile_error!(
    "build with the default `mimalloc` feature; `--no-default-features --features heap-profile` is for heap profiling only"
);

pub mod error;
pub mod fsutil;
pub mod model;
#[cfg(test)]
pub(crate) mod testutil;
pub mod time;

pub mod approval;
pub mod ca;
pub mod config;
pub mod events;
pub mod grant;
pub mod identity;
pub mod inspect;
pub mod ledger;
pub mod metrics;
pub mod policy;
pub mod redact;
pub mod runtime_env;

pub mod admin;
pub mod notify;
pub mod proxy;
pub mod sandbox;
pub mod tls;

pub mod app;
pub mod cli;
