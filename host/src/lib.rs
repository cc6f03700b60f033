//! Syncbase: PocketBase's HTTP API served over SQLite, built to replicate across nodes.
//!
//! `Server::bind` opens the store and binds the listener; `Server::serve` runs until the
//! shutdown future completes, lets in-flight requests finish, then checkpoints SQLite.

pub mod access;
pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod cron;
pub mod dashboard;
pub mod files;
pub mod filter;
pub mod mail;
pub mod nats;
pub mod net;
pub mod oauth2;
pub mod plugins;
pub mod pocketbase;
pub mod realtime;
pub mod records;
pub mod replication;
pub mod rooms;
pub mod settings;
pub mod shutdown;
pub mod snapshot;
pub mod store;
pub mod superuser;
pub mod sync;
pub mod testhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::Config;
use store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not open the data directory: {0}")]
    Store(#[from] store::StoreError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not open the plugin runtime: {0}")]
    Plugins(#[from] plugins::PluginError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Nats(#[from] nats::NatsError),
    #[error("could not restore the replicated plugin bindings: {0}")]
    Bindings(String),
    #[error("file storage: {0}")]
    Files(#[from] files::FileError),
    #[error("refusing to go on: {0}")]
    Replication(String),
    #[error("{0}")]
    Log(#[from] replication::LogError),
}

/// A bound, not yet serving, server.
pub struct Server {
    config: Config,
    store: Store,
    listener: TcpListener,
    state: api::AppState,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Server, Error> {
        // Fail before anything starts when the embedded mode has no nats-server to run.
        if let Some(sync::SyncConfig {
            source: sync::Source::Embedded(opts),
            ..
        }) = &config.sync
        {
            let bin = nats::binary::find(opts.binary.as_deref())?;
            nats::binary::check_version(&bin).await?;
        }
        // A NATS cluster that refuses our credentials or certificates is a configuration error:
        // say so and stop, rather than serve while retrying forever. Servers that are merely
        // down are not: the node starts and its writes wait in the outbox.
        if let Some(sync::SyncConfig {
            source: sync::Source::External(conn),
            ..
        }) = &config.sync
        {
            sync::Sync::check_access(conn).await?;
        }
        // As Go does for PocketBase: connections are file descriptors.
        let open_files = net::raise_open_file_limit();
        let mut plugins =
            plugins::Plugins::open(&config.dir, config.plugins.clone(), &config.node_id)?;
        plugins.outbound = Arc::new(plugins::OutboundLog::new(
            plugins::OUTBOUND_ENTRIES,
            config.outbound_log_bytes,
        ));
        let hooks = config
            .sync
            .as_ref()
            .map(|cfg| sync::Sync::hooks(cfg, &plugins));
        let store = Store::open_with(&config.dir, &config.store, hooks.clone())?;
        let files = files::Files::open(&config.dir, config.body_limit)?;
        let settings = store.read(|c, _| store::settings::load(c)).await?;
        if let Err(e) = files.configure(&settings) {
            // The API still serves; uploads fail until the settings are fixed.
            tracing::error!(error = %e, "the s3 settings do not make a storage");
        }
        if let Some(path) = &config.test_faults {
            testhooks::spawn(path.clone(), store.clone());
        }
        let listener = TcpListener::bind(config.http)
            .await
            .map_err(|source| Error::Bind {
                addr: config.http,
                source,
            })?;
        // The fold reads rows for the change feed only while realtime clients are connected.
        let hub = realtime::Hub::with_listeners(
            config.realtime.clone(),
            hooks
                .as_ref()
                .map(|h| h.listeners.clone())
                .unwrap_or_default(),
        );
        if config.sync.is_some() && sync::Sync::holds_own_state(&store).await? {
            // The first replicated start of a node with data: its own bindings stay until
            // its genesis makes them the log's (`sync/genesis.rs`).
            plugins.reconcile(store.schema()).await?;
            sync::Sync::seed_users(&store).await?;
        } else if config.sync.is_some() {
            sync::Sync::restore_bindings(&store, &plugins)
                .await
                .map_err(Error::Bindings)?;
            sync::Sync::seed_users(&store).await?;
        } else {
            // Bindings are keyed by collection id; older ones named the collection.
            plugins.reconcile(store.schema()).await?;
        }
        let sync = match (&config.sync, hooks) {
            (Some(cfg), Some(hooks)) => Some(sync::Sync::start(
                cfg.clone(),
                hooks,
                store.clone(),
                plugins.clone(),
                files.clone(),
            )),
            _ => None,
        };
        let backups = Arc::new(snapshot::backups::Backups::new(
            store.clone(),
            files.clone(),
            config.node_id.clone(),
            sync.as_ref().map(|s| s.snapshots().clone()),
        ));
        let settings = store
            .read(|conn, _| store::settings::load_settings(conn))
            .await?;
        let logs = store::logs::Logs::open(
            &config.dir,
            config.log_queue,
            store::logs::LogSettings::from_settings(&settings.to_json()),
        )?;
        let crons = builtin_crons(&store, &logs);
        let auth_cache: Arc<access::AuthCache> = Arc::new(Default::default());
        let bound = listener.local_addr().unwrap_or(config.http);
        let rooms = rooms::Rooms::new(
            config.rooms.clone(),
            &config.node_id,
            bound,
            store.clone(),
            auth_cache.clone(),
            plugins.clone(),
            sync.as_ref().map(|s| s.log_watch()),
        );
        let state = api::AppState {
            store: store.clone(),
            auth_cache,
            hub,
            plugins,
            sync,
            files,
            backups,
            guard: Arc::new(api::guard::Guard::new(&settings)),
            rooms,
            mailer: mail::Mailer::new(store.clone()),
            resend: Arc::new(Default::default()),
            http: oauth2::http_client(),
            logs,
            crons,
        };
        api::backups::schedule(&state, &settings);
        let mut config = config;
        config.net.max_connections = net::fit_connections(config.net.max_connections, open_files);
        Ok(Server {
            config,
            store,
            listener,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.http)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` completes, then drains requests and closes the store.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Server {
            config,
            store,
            listener,
            state,
        } = self;
        let hub = state.hub.clone();
        let rooms = state.rooms.clone();
        let replication = state.sync.clone();
        let logs = state.logs.clone();
        let scheduler = tokio::spawn(state.crons.clone().run_scheduler());
        let fanout = tokio::spawn(realtime::run_fanout(store.clone(), hub.clone()));
        // Queued mails survive a stop in the outbox; the next start resumes them.
        let mailer = tokio::spawn(state.mailer.clone().run());
        let auth_cleanup = tokio::spawn(clean_expired_auth_rows(store.clone()));
        let janitor = tokio::spawn(files::janitor::run(state.files.clone(), store.clone()));
        // With replication the outbound filters run where changes are captured for the log.
        let outbound = replication
            .is_none()
            .then(|| tokio::spawn(plugins::run_outbound(store.clone(), state.plugins.clone())));
        let app = api::router(state, config.body_limit);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let grace = config.shutdown_grace;
        let listener = net::Listener::new(listener, config.net.clone());
        let app = app.into_make_service_with_connect_info::<net::ConnInfo>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            // Realtime streams never end by themselves: close them so draining can finish.
            hub.drop_all();
            // Room sockets too; owned rooms' leases are given up so other nodes take over.
            rooms.shutdown(std::time::Duration::from_secs(2)).await;
            let _ = stop_tx.send(true);
        });
        let mut stop_rx2 = stop_rx.clone();
        // A replicating node that cannot continue the cluster's log stops instead of serving.
        let fatal = {
            let mut rx = replication.as_ref().map(|s| s.fatal());
            async move {
                match rx.as_mut() {
                    Some(rx) => match rx.wait_for(Option::is_some).await {
                        Ok(reason) => reason.clone().unwrap_or_default(),
                        Err(_) => std::future::pending().await,
                    },
                    None => std::future::pending().await,
                }
            }
        };
        let result = tokio::select! {
            r = serve => r.map_err(Error::Serve),
            reason = fatal => Err(Error::Replication(reason)),
            // Connections that outlive the grace period are cut.
            _ = async move {
                let _ = stop_rx2.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("grace period over; closing remaining connections");
                Ok(())
            }
        };
        drop(stop_rx);
        scheduler.abort();
        fanout.abort();
        mailer.abort();
        auth_cleanup.abort();
        janitor.abort();
        if let Some(outbound) = outbound {
            outbound.abort();
        }
        store.close().await?;
        logs.close().await;
        tracing::info!("store closed and checkpointed");
        if let Some(sync) = replication {
            sync.stop().await;
        }
        result
    }
}

/// The jobs every node runs (PocketBase's ids and schedules). Other subsystems add theirs to
/// the returned registry before the server starts (e.g. a backup schedule).
fn builtin_crons(store: &Store, logs: &store::logs::Logs) -> cron::Crons {
    let crons = cron::Crons::default();
    let (s, l) = (store.clone(), logs.clone());
    let optimize = crons.add("__pbDBOptimize__", "0 0 * * *", move || {
        let (s, l) = (s.clone(), l.clone());
        async move {
            if let Err(e) = s.optimize().await {
                tracing::warn!(error = %e, "periodic database optimize failed");
            }
            if let Err(e) = l.checkpoint().await {
                tracing::warn!(error = %e, "periodic log database checkpoint failed");
            }
        }
    });
    let l = logs.clone();
    let cleanup = crons.add("__pbLogsCleanup__", "0 */6 * * *", move || {
        let l = l.clone();
        async move {
            match l.cleanup().await {
                Ok(n) => tracing::debug!(deleted = n, "old request logs deleted"),
                Err(e) => tracing::warn!(error = %e, "failed to delete old logs"),
            }
        }
    });
    for r in [optimize, cleanup] {
        if let Err(e) = r {
            tracing::error!(error = %e, "a built-in cron expression is invalid");
        }
    }
    crons
}

/// Deletes expired OTPs and MFA sessions every hour, as PocketBase's cleanup crons do (an
/// expired one is refused anyway; this keeps the tables small). On a cluster every node runs
/// it; deleting a row another node already deleted is harmless.
async fn clean_expired_auth_rows(store: Store) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let result = store
            .write(|ctx| store::auth_rows::delete_expired(ctx, chrono::Utc::now()))
            .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "expired OTPs and MFA sessions removed"),
            Err(e) => tracing::warn!(error = %e, "could not remove expired OTPs and MFA sessions"),
        }
    }
}

/// Binds and serves until `shutdown` completes: the whole server in one call.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Server::bind(config).await?.serve(shutdown).await
}
