//! The composition root: builds every component from the `Config`, binds the listeners,
//! runs the proxy, the admin API and the policy watcher, and owns shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::approval::{ApprovalStore, SledApprovals};
use crate::ca::{CertificateAuthority, LeafIssuer, LocalCa};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{EventBus, Published};
use crate::grant::{GrantContext, PlaceholderKey, Secrets, SystemClock};
use crate::identity::{AdminToken, Authenticator, IdentityStore};
use crate::identity::{ApproverStore, SledApprovers, SledIdentity};
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::model::EventSink;
use crate::notify::Notifier;
use crate::policy::{pack, PolicyEngine};
use crate::proxy::{self, Destinations, ProxyState, Upstream};
use crate::redact::Redactor;

/// Bench-only switch: when this environment variable is set, the ledger is off.
pub const BENCH_NO_LEDGER: &str = "CLAWSER_BENCH_NO_LEDGER";

/// The file a running server writes into the data dir so the CLI finds it.
pub const SERVER_FILE: &str = "server.json";

/// What `server.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    pub pid: u32,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The proxy's Unix socket (`proxy.unix_socket`), when it listens on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_socket: Option<PathBuf>,
}

/// Reads `<data_dir>/server.json` if a server wrote one.
pub fn read_server_info(data_dir: &Path) -> Option<ServerInfo> {
    let text = std::fs::read_to_string(data_dir.join(SERVER_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Opens the sled database of the data dir, with a clear error when another process
/// (a running `clawser serve`) holds it.
pub fn open_db(data_dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let path = data_dir.join("db");
    // Durability comes from explicit flushes (identity changes) and the ledger's write-ahead
    // log; sled's periodic background flush would only cost I/O.
    sled::Config::new()
        .path(&path)
        .flush_every_ms(None)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                Error::Store(format!(
                "{} is locked by another process (is `clawser serve` running with this data dir?)",
                path.display()
            ))
            }
            other => Error::Store(format!("{}: {other}", path.display())),
        })
}

/// Events kept for slow `/v1/events` subscribers and webhooks.
pub const EVENT_BUFFER: usize = 4096;

/// Marks approvals past their TTL as expired (and records it) every `every`.
async fn expire_approvals(
    approvals: Arc<dyn ApprovalStore>,
    every: std::time::Duration,
    retention: std::time::Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let a = approvals.clone();
        let now = time::OffsetDateTime::now_utc();
        match tokio::task::spawn_blocking(move || a.expire(now)).await {
            Ok(Ok(expired)) => {
                for e in expired {
                    tracing::info!(approval = %e.id, agent = %e.agent, "approval expired");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "expiring approvals failed"),
            Err(e) => tracing::error!(error = %e, "expiring approvals failed"),
        }
        let a = approvals.clone();
        match tokio::task::spawn_blocking(move || a.prune(now, retention)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                pruned = n,
                "pruned ended approvals past approvals.retention"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "pruning approvals failed"),
            Err(e) => tracing::error!(error = %e, "pruning approvals failed"),
        }
    }
}

/// Every component, built but not yet serving.
pub struct App {
    pub config: Config,
    pub identity: Arc<dyn IdentityStore>,
    pub policy: Arc<PolicyEngine>,
    pub ca: Arc<LeafIssuer>,
    pub admin_token: AdminToken,
    pub metrics: Arc<Metrics>,
    pub bundle: PathBuf,
    pub ledger: Option<Ledger>,
    pub approvals: Arc<dyn ApprovalStore>,
    pub approvers: Arc<dyn ApproverStore>,
    pub bus: EventBus,
    /// Grants, secrets, the placeholder key and the clock grants are judged by.
    pub grants: GrantContext,
}

impl App {
    /// Builds the components: data dir, policy pack, CA, store, admin token, policy, upstream.
    pub fn build(config: Config) -> Result<App> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(Error::io("creating", &config.data_dir))?;
        if pack::install_if_missing(&config.policy.dir)? {
            tracing::info!(dir = %config.policy.dir.display(), "wrote the default policy pack");
        }
        let (ca, created) = LocalCa::load_or_create(&config.ca.dir)?;
        if created {
            tracing::info!(cert = %ca.cert_path.display(), fingerprint = %ca.fingerprint(), "generated a new local CA");
        }
        let bundle = crate::runtime_env::write_bundle(&config.data_dir, &ca.cert_pem)?;
        let ca = Arc::new(LeafIssuer::new(
            ca,
            config.ca.leaf_validity_days,
            config.ca.cache_size,
        )?);
        let db = open_db(&config.data_dir, config.db_cache_bytes)?;
        let ledger = if std::env::var_os(BENCH_NO_LEDGER).is_some() {
            tracing::warn!("{BENCH_NO_LEDGER} is set: the work ledger is OFF (benchmarks only; nothing is recorded)");
            None
        } else {
            Some(Ledger::open(
                db.clone(),
                &config.data_dir,
                config.ledger.clone(),
            )?)
        };
        let bus = EventBus::new(EVENT_BUFFER);
        let sink: Option<Arc<dyn EventSink>> = Some(Arc::new(Published {
            inner: ledger.clone().map(|l| Arc::new(l) as Arc<dyn EventSink>),
            bus: bus.clone(),
        }));
        let approvers: Arc<dyn ApproverStore> =
            Arc::new(SledApprovers::open(&db, &config.approvers, sink.clone())?);
        let approvals: Arc<dyn ApprovalStore> = Arc::new(SledApprovals::open(
            &db,
            config.approvals.ttl,
            config.approvals.max_pending_per_agent,
            sink.clone(),
        )?);
        let identity: Arc<dyn IdentityStore> = Arc::new(SledIdentity::open_recorded(
            db.clone(),
            &config.agents,
            sink.clone(),
        )?);
        let grants = open_grants(
            &config,
            db,
            identity.as_ref(),
            ledger.as_ref(),
            sink.clone(),
        )?;
        let admin_token = AdminToken::load_or_create(&config.data_dir)?;
        let policy = Arc::new(PolicyEngine::load_recorded(
            &config.policy.dir,
            config.policy.eval_timeout,
            config.policy.eval,
            sink,
        )?);
        Ok(App {
            config,
            identity,
            policy,
            ca,
            admin_token,
            metrics: Arc::new(Metrics::default()),
            bundle,
            ledger,
            approvals,
            approvers,
            bus,
            grants,
        })
    }

    /// Binds both listeners and starts serving.
    pub async fn start(self) -> Result<Running> {
        let proxy_l = TcpListener::bind(self.config.proxy.listen)
            .await
            .map_err(Error::io(
                "binding proxy.listen",
                self.config.proxy.listen.to_string(),
            ))?;
        let admin_l = TcpListener::bind(self.config.admin.listen)
            .await
            .map_err(Error::io(
                "binding admin.listen",
                self.config.admin.listen.to_string(),
            ))?;
        // The Unix socket is the way out of `clawser run --isolate` only: a server that cannot
        // bind it (a path over the 107-byte limit, a read-only directory) still serves TCP.
        let unix_l = match &self.config.proxy.unix_socket {
            Some(path) => match proxy::listener::bind_unix(path) {
                Ok(l) => Some((l, path.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "not listening on proxy.unix_socket: clawser run --isolate will refuse to start (set proxy.unix_socket to a shorter path)");
                    None
                }
            },
            None => None,
        };
        let proxy_addr = proxy_l
            .local_addr()
            .map_err(Error::io("reading", "proxy socket"))?;
        let admin_addr = admin_l
            .local_addr()
            .map_err(Error::io("reading", "admin socket"))?;
        let (tx, rx) = watch::channel(false);

        // Destinations are checked against the listeners actually bound (port 0 included).
        let p = &self.config.proxy;
        let destinations = Arc::new(
            Destinations::new(
                p.allow_private.clone(),
                vec![proxy_addr, admin_addr],
                p.dns_cache_ttl,
                p.dns_cache_size,
                self.config.upstream.connect_timeout,
            )
            .with_pinned(p.resolve.clone()),
        );
        let upstream = Upstream::new(&self.config.upstream, destinations.clone())?;
        // Secret values are redacted wherever they would show, as a last line of defence.
        let mut patterns = p.redact_patterns.clone();
        for d in self.grants.secrets.decls() {
            for form in self.grants.secrets.forms(&d.name).iter() {
                patterns.push(regex::escape(&String::from_utf8_lossy(form)));
            }
        }
        let redactor =
            Redactor::new(&patterns, &p.redact_query_keys, &p.redact_headers).map_err(|e| {
                Error::Config {
                    path: self.config.source.clone(),
                    message: format!("proxy.redact_patterns: {e}"),
                }
            })?;
        let ca: Arc<dyn CertificateAuthority> = self.ca.clone();
        let state = Arc::new(ProxyState::new(
            self.config.proxy.clone(),
            self.config.environments.clone(),
            Authenticator::new(self.identity.clone()),
            self.policy.clone(),
            ca,
            upstream,
            self.config.upstream.connect_timeout,
            self.metrics.clone(),
            self.ledger.clone(),
            self.approvals.clone(),
            self.bus.clone(),
            destinations,
            redactor,
            self.grants.clone(),
            self.config.github.hosts.clone(),
        ));
        let admin_state = Arc::new(AdminState {
            identity: self.identity.clone(),
            policy: self.policy.clone(),
            metrics: self.metrics.clone(),
            token: self.admin_token.clone(),
            ledger: self.ledger.clone(),
            approvals: self.approvals.clone(),
            approvers: self.approvers.clone(),
            bus: self.bus.clone(),
            grants: self.grants.clone(),
            secrets: self.config.secrets.clone(),
            approval_limits: self.config.approvals.clone(),
        });
        let notifier = Notifier::new(&self.config.notify, &self.config.upstream)?;
        let rx_unix = rx.clone();
        let mut tasks = vec![
            tokio::spawn(expire_approvals(
                self.approvals.clone(),
                self.config.approvals.expire_interval,
                self.config.approvals.retention,
                rx.clone(),
            )),
            tokio::spawn(notifier.run(self.bus.subscribe(), rx.clone())),
            tokio::spawn(crate::grant::upkeep::sweep(
                self.grants.clone(),
                self.config.approvals.expire_interval,
                rx.clone(),
            )),
            tokio::spawn(crate::grant::upkeep::refresh_secrets(
                self.grants.secrets.clone(),
                rx.clone(),
            )),
            tokio::spawn(admin::serve(admin_state, admin_l, rx.clone())),
            tokio::spawn(
                self.policy
                    .clone()
                    .watch(self.config.policy.reload_interval, rx.clone()),
            ),
        ];
        let shards = self.config.proxy.shards;
        if shards == 0 {
            tasks.push(tokio::spawn(proxy::serve(
                state.clone(),
                proxy_l,
                rx.clone(),
            )));
        } else {
            tasks.extend(proxy::shards::start(
                &state,
                &self.config.upstream,
                proxy_l,
                shards,
                rx.clone(),
            )?);
        }
        let socket = unix_l.map(|(l, path)| {
            tasks.push(tokio::spawn(proxy::serve(state, l, rx_unix)));
            path
        });
        let info = ServerInfo {
            pid: std::process::id(),
            proxy: proxy_addr,
            admin: admin_addr,
            proxy_socket: socket.clone(),
        };
        let server_file = self.config.data_dir.join(SERVER_FILE);
        let text = serde_json::to_vec_pretty(&info).map_err(|e| Error::Store(e.to_string()))?;
        crate::fsutil::write_public(&server_file, &text)?;
        let policy = self.policy.current();
        let workers =
            tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_workers());
        tracing::info!(
            proxy = %proxy_addr,
            admin = %admin_addr,
            policy = policy.short_revision(),
            engine = policy.engine_name(),
            workers,
            shards,
            config = %self.config.source,
            admin_token = %self.admin_token.path.display(),
            "clawser is running"
        );
        Ok(Running {
            proxy_addr,
            admin_addr,
            shutdown: tx,
            tasks,
            server_file,
            _socket: socket.map(proxy::listener::SocketFile),
            identity: self.identity,
            ledger: self.ledger,
        })
    }
}

/// Opens the grant store (declared grants upserted, use counts reconciled with the ledger),
/// reads every secret (a missing source is an error naming it), and loads the placeholder key.
fn open_grants(
    config: &Config,
    db: sled::Db,
    identity: &dyn IdentityStore,
    ledger: Option<&Ledger>,
    sink: Option<Arc<dyn EventSink>>,
) -> Result<GrantContext> {
    let secrets = Secrets::load(&config.secrets).map_err(|m| Error::Config {
        path: config.source.clone(),
        message: m,
    })?;
    for d in &config.grants {
        if d.subject.kind == crate::grant::SubjectKind::Agent
            && identity.agent(&d.subject.id).is_none()
        {
            tracing::warn!(grant = %d.name, agent = %d.subject.id, "declared grant names an unknown agent");
        }
    }
    let recorded = ledger
        .into_iter()
        .flat_map(|l| l.raw_entries().filter_map(|e| e.ok().map(|(_, b, _)| b)));
    let store = crate::grant::upkeep::open_sled(db, &config.grants, recorded, sink)?;
    Ok(GrantContext {
        store: Arc::new(store),
        secrets: Arc::new(secrets),
        key: Arc::new(PlaceholderKey::load_or_create(&config.data_dir)?),
        clock: Arc::new(SystemClock),
    })
}

/// A serving instance.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server_file: PathBuf,
    /// The proxy's Unix socket, removed when the server stops.
    _socket: Option<proxy::listener::SocketFile>,
    identity: Arc<dyn IdentityStore>,
    ledger: Option<Ledger>,
}

impl Running {
    /// Stops accepting, waits for the tasks, flushes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(l) = &self.ledger {
            // Sign a final checkpoint so a verifier covers everything recorded.
            l.close();
        }
        let _ = std::fs::remove_file(&self.server_file);
        drop(self.identity);
        tracing::info!("clawser stopped");
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub async fn until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        self.shutdown().await;
    }
}
