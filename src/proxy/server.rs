//! Runs the proxy: binds listeners, accepts (plain and TLS) under a connection cap, reloads, drains on exit.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

use super::{Runtime, Shared};
use crate::clock::SharedClock;
use crate::config::file::{FileStore, StoreFallback, StoreKind};
use crate::config::{self, ConfigErrors, Mode, Sources};
use crate::context::Connection;
use crate::metrics::Metrics;
use crate::pipeline::Services;
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::store::memory::{MemoryLimits, MemoryStore};
use crate::store::redis::{RedisOptions, RedisStore};

/// What `serve` (and the demo) start the proxy with.
pub struct ServeOptions {
    /// The main config file.
    pub config_path: PathBuf,
    /// Where files are read from (the file system, or the binary for the demo).
    pub sources: Arc<dyn Sources>,
    /// Reload when a config file changes on disk.
    pub watch_files: bool,
    /// Told the bound proxy address(es) once listening (tests and the demo use it).
    pub on_ready: Option<OnReady>,
}

/// Called once with the bound addresses.
pub type OnReady = Box<dyn FnOnce(&Bound) + Send>;

/// The addresses actually bound (ports may have been 0).
#[derive(Debug, Clone)]
pub struct Bound {
    pub http: Vec<SocketAddr>,
    pub https: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

/// Reloads the config from its files and swaps it in; a config that does not compile changes nothing.
pub struct Reloader {
    path: PathBuf,
    sources: Arc<dyn Sources>,
    shared: Arc<Shared>,
    /// One reload at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Loads, compiles and swaps; counts the result in `authward_config_reloads_total`.
    pub async fn reload(&self, trigger: &'static str) -> Result<(), ConfigErrors> {
        let _guard = self.lock.lock().await;
        let services = self.shared.services();
        let (path, sources) = (self.path.clone(), self.sources.clone());
        let built = tokio::task::spawn_blocking(move || {
            let config = config::load_from(&path, Mode::Serve, sources.as_ref())?;
            Runtime::build(config, &services).map_err(|e| {
                ConfigErrors::from(config::ConfigError {
                    file: path.display().to_string(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                })
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(ConfigErrors::from(config::ConfigError {
                file: self.path.display().to_string(),
                line: 0,
                column: 0,
                message: format!("reload task failed: {e}"),
            }))
        });
        let reloads = &self.shared.metrics.config_reloads;
        match built {
            Ok(runtime) => {
                let old = self.shared.runtime.load();
                if old.config.listen.http != runtime.config.listen.http
                    || old.config.listen.https != runtime.config.listen.https
                    || old.config.admin.listen != runtime.config.admin.listen
                {
                    tracing::warn!("listener addresses changed: they take effect at the next restart");
                }
                self.shared.recorder.check_reload(&runtime.config.events);
                if old.config.store != runtime.config.store {
                    tracing::warn!("store settings changed: they take effect at the next restart");
                }
                self.shared.runtime.store(Arc::new(runtime));
                reloads.with_label_values(&["ok"]).inc();
                tracing::info!(trigger, "config reloaded");
                Ok(())
            }
            Err(errors) => {
                reloads.with_label_values(&["error"]).inc();
                tracing::error!(trigger, errors = %errors, "config reload failed; the previous config keeps serving");
                Err(errors)
            }
        }
    }

    /// The files the current config was read from.
    pub fn files(&self) -> Vec<PathBuf> {
        self.shared.runtime.load().config.files.clone()
    }
}

/// Picks the current config's certificate for every handshake, so a reload swaps certificates too.
#[derive(Debug)]
struct CurrentCert(Arc<ArcSwap<Option<Arc<CertifiedKey>>>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().as_ref().clone()
    }
}

/// Runs the proxy until `shutdown` resolves, then drains within the configured grace period.
pub async fn run(opts: ServeOptions, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let ServeOptions {
        config_path,
        sources,
        watch_files,
        on_ready,
    } = opts;
    let config = {
        let (p, s) = (config_path.clone(), sources.clone());
        tokio::task::spawn_blocking(move || config::load_from(&p, Mode::Serve, s.as_ref())).await??
    };
    let metrics = Arc::new(Metrics::new());
    let clock = crate::clock::system();
    let store = open_store(&config.store, clock.clone(), &metrics).await?;
    let listen = config.listen.clone();
    let admin_addr = config.admin.listen;
    let cert = Arc::new(ArcSwap::from_pointee(config.tls.clone()));
    let services = Services {
        metrics: metrics.clone(),
        store: store.clone(),
        clock: clock.clone(),
    };
    let recorder =
        crate::events::Recorder::start(&config.events, store.clone(), metrics.clone(), clock.clone())?;
    let runtime = Runtime::build(config, &services)?;
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(runtime),
        clock,
        metrics,
        store,
        recorder: Arc::new(recorder),
        connections: TaskTracker::new(),
    });
    let current = Arc::downgrade(&shared);
    shared
        .recorder
        .set_feedback_hook(Arc::new(crate::risk::feedback::Learner::new(
            shared.store.clone(),
            Box::new(move || current.upgrade()?.runtime.load().config.risk.clone()),
        )));
    let reloader = Arc::new(Reloader {
        path: config_path,
        sources,
        shared: shared.clone(),
        lock: tokio::sync::Mutex::new(()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // Before the listeners: once a port accepts connections, a change to the config files is seen.
    spawn_reload_triggers(
        &mut tasks,
        reloader.clone(),
        cert.clone(),
        watch_files,
        stop_rx.clone(),
    );

    let mut http_listeners = Vec::new();
    for addr in &listen.http {
        http_listeners.push(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let mut https_listeners = Vec::new();
    for addr in &listen.https {
        https_listeners.push(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?;
    let bound = Bound {
        http: http_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect(),
        https: https_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect(),
        admin: admin_listener.local_addr()?,
    };
    tracing::info!(http = ?bound.http, https = ?bound.https, admin = %bound.admin, "authward listening");

    let permits = Arc::new(Semaphore::new(listen.max_connections));

    let tls_acceptor = if https_listeners.is_empty() {
        None
    } else {
        let mut tls =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(CurrentCert(cert.clone())));
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
    };
    let builder = {
        let mut b = auto::Builder::new(TokioExecutor::new());
        // `half_close`: a client that shuts its sending side after the request still gets the answer, as
        // from HAProxy without `abortonclose`; a request in flight is bounded by `upstream.timeout` and
        // `upstream.read_timeout`, not by the client staying. Without it hyper reads the client
        // connection for an EOF while each request is in flight, and that read reserves a new 8 KiB
        // buffer every request (3 % of a pass-through request's instructions, BENCHMARKS.md).
        b.http1()
            .writev(false)
            .half_close(true)
            .timer(TokioTimer::new())
            .header_read_timeout(listen.header_read_timeout);
        b.http2().timer(TokioTimer::new());
        b
    };
    for l in http_listeners {
        let acc = Acceptor {
            shared: shared.clone(),
            builder: builder.clone(),
            permits: permits.clone(),
            tls: None,
            handshake_timeout: listen.header_read_timeout,
        };
        tasks.spawn(acc.run(l, stop_rx.clone()));
    }
    for l in https_listeners {
        let acc = Acceptor {
            shared: shared.clone(),
            builder: builder.clone(),
            permits: permits.clone(),
            tls: tls_acceptor.clone(),
            handshake_timeout: listen.header_read_timeout,
        };
        tasks.spawn(acc.run(l, stop_rx.clone()));
    }
    tasks.spawn(timer_floor(stop_rx.clone()));
    tasks.spawn(crate::admin::serve(
        admin_listener,
        shared.clone(),
        reloader.clone(),
        stop_rx.clone(),
    ));
    if let Some(f) = on_ready {
        f(&bound);
    }

    shutdown.await;
    let deadline = tokio::time::Instant::now() + listen.shutdown_grace;
    tracing::info!(grace = ?listen.shutdown_grace, "shutting down: no new connections, finishing requests in flight and open tunnels");
    let _ = stop_tx.send(true);
    // Let the accept loops drop their listeners before draining.
    while tasks.join_next().await.is_some() {}
    // Connections and the tunnels they became (`Shared::connections`).
    shared.connections.close();
    match tokio::time::timeout(listen.shutdown_grace, shared.connections.wait()).await {
        Ok(()) => tracing::info!("all connections finished"),
        Err(_) => tracing::warn!("grace period over: closing the remaining connections"),
    }
    // Every request has been recorded: write out the queued events. The sinks are always flushed whole;
    // history writes and webhook deliveries get what is left of the grace period (at least a second).
    let left = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .max(std::time::Duration::from_secs(1));
    shared.recorder.shutdown(left).await;
    tracing::info!("events flushed");
    Ok(())
}

/// How far ahead [`timer_floor`] keeps a timer due: below the per-request timeouts' defaults (the Redis
/// store's 250 ms is the shortest). A shorter timer (a timeout configured below it, the MFA enumeration
/// delay) wakes the driver as before: the floor saves a system call, it never delays a timer.
const TIMER_FLOOR: std::time::Duration = std::time::Duration::from_millis(200);

/// Keeps a timer due within [`TIMER_FLOOR`] until `stop`, so that the timers each request sets (header
/// read, upstream, store) are never the runtime's earliest. tokio wakes its I/O driver with an eventfd
/// write whenever a new timer falls due before the one the driver last planned to wake for, even while the
/// driver is busy on this very thread (tokio-rs/tokio#5207): up to one extra system call a request.
async fn timer_floor(mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TIMER_FLOOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
    }
}

/// Opens the configured store backend. The embedded file is opened on the blocking pool: after an unclean
/// shutdown redb checks it first.
async fn open_store(
    cfg: &FileStore,
    clock: SharedClock,
    metrics: &Metrics,
) -> anyhow::Result<Arc<dyn Store>> {
    let memory = MemoryLimits {
        max_keys: cfg.max_keys,
        max_bytes: usize::try_from(cfg.max_memory.0).unwrap_or(usize::MAX),
        ..MemoryLimits::default()
    };
    Ok(match cfg.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(memory, clock)),
        StoreKind::Embedded => {
            let opts = EmbeddedOptions {
                path: cfg.path.clone(),
                max_records: cfg.max_records,
                memory,
            };
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(opts, clock)).await??;
            tracing::info!(path = %store.path().display(), "store file open");
            Arc::new(store)
        }
        StoreKind::Redis => {
            let url = match cfg.url_env.as_deref() {
                Some(var) => std::env::var(var)
                    .ok()
                    .filter(|u| !u.is_empty())
                    .with_context(|| format!("store.url_env: the environment variable {var} is not set"))?,
                None => cfg.url.clone(),
            };
            let opts = RedisOptions {
                url,
                prefix: cfg.prefix.clone(),
                timeout: cfg.timeout.0,
                max_set_members: MemoryLimits::default().max_set_members,
                fallback: (cfg.fallback == StoreFallback::Local).then_some(memory),
                unavailable: metrics.store_unavailable.with_label_values(&[match cfg.fallback {
                    StoreFallback::Local => "local",
                    StoreFallback::None => "none",
                }]),
                ca: match &cfg.ca {
                    Some(path) => {
                        Some(std::fs::read(path).with_context(|| format!("store.ca {}", path.display()))?)
                    }
                    None => None,
                },
            };
            let store = RedisStore::open(opts, clock)?;
            tracing::info!(url = store.url(), prefix = %cfg.prefix, "redis store (connects on first use)");
            Arc::new(store)
        }
    })
}

/// Reloads on SIGHUP and, when asked, on changes to any config file; keeps the TLS certificate current.
fn spawn_reload_triggers(
    tasks: &mut tokio::task::JoinSet<()>,
    reloader: Arc<Reloader>,
    cert: Arc<ArcSwap<Option<Arc<CertifiedKey>>>>,
    watch_files: bool,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(8);
    #[cfg(unix)]
    {
        let tx = tx.clone();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = tx.try_send("sighup"); }
                    _ = stop.changed() => return,
                }
            }
        });
    }
    let watcher = if watch_files {
        config::watch::FileWatcher::start(reloader.files(), tx.clone())
    } else {
        None
    };
    tasks.spawn(async move {
        let mut watcher = watcher;
        loop {
            tokio::select! {
                trigger = rx.recv() => {
                    let Some(trigger) = trigger else { return };
                    if trigger == "file" {
                        // Editors write in several steps: wait for the burst to settle, then reload once.
                        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                        while rx.try_recv().is_ok() {}
                    }
                    if reloader.reload(trigger).await.is_ok() {
                        cert.store(Arc::new(reloader.shared.runtime.load().config.tls.clone()));
                        if let Some(w) = watcher.as_mut() {
                            w.rewatch(reloader.files());
                        }
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// The hyper service of one client connection.
fn service(
    shared: Arc<Shared>,
    conn: Connection,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<super::body::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<super::body::Body>, Infallible>> + Send,
> + Clone {
    let conn = Arc::new(conn);
    service_fn(move |req| {
        let in_flight = activity.begin(req.version());
        let (shared, conn) = (shared.clone(), conn.clone());
        async move {
            let answer = super::handle(&shared, req, &conn).await;
            drop(in_flight);
            Ok::<_, Infallible>(answer)
        }
    })
}

/// Serves one client connection's stream (plain, or after its TLS handshake; with HTTP/1.1 upgrades: the
/// tunnel is [`super::tunnel`]'s) until it ends. It must send a first request head within `within`
/// ([`FirstBytes`]); once `stop` is set, or an HTTP/2 connection has sat idle for `within` (see
/// [`Activity`]), its requests in flight finish and it closes.
async fn serve<S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: S,
    shared: Arc<Shared>,
    conn: Connection,
    within: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(FirstBytes::new(stream, within, activity.clone()));
    let conn = builder.serve_connection_with_upgrades(io, service(shared, conn, activity.clone()));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = stop.wait_for(|stopped| *stopped) => {}
        _ = activity.idle_h2(within) => tracing::debug!("idle HTTP/2 connection closed"),
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// What one client connection has been asked so far: its protocol, once a request has come (for
/// [`FirstBytes`]), and, on HTTP/2, how many requests have started and how many are in flight. hyper closes an HTTP/1.1
/// connection that sends no next request head within `listen.header_read_timeout`, but its HTTP/2 server
/// has no such limit: a client could open `max_connections` connections, ask once on each and hold them
/// all for ever. [`Activity::idle_h2`] gives HTTP/2 the same limit.
#[derive(Default)]
struct Activity {
    /// 0 before the first request, then [`HTTP1`] or [`HTTP2`].
    protocol: AtomicU8,
    started: AtomicU64,
    in_flight: AtomicUsize,
}

const HTTP1: u8 = 1;
const HTTP2: u8 = 2;

impl Activity {
    /// Notes a request; on HTTP/2 the returned guard keeps it counted in flight until its answer's head.
    fn begin(self: &Arc<Self>, version: http::Version) -> Option<InFlight> {
        if version != http::Version::HTTP_2 {
            self.protocol.store(HTTP1, Ordering::Relaxed);
            return None;
        }
        self.protocol.store(HTTP2, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(self.clone()))
    }

    /// Completes once an HTTP/2 connection has had no request in flight and started none for a whole
    /// `within` (looked at every `within`, so after one to two of them); never on HTTP/1.1. An answer
    /// still streaming then finishes: the connection's graceful shutdown only refuses new streams.
    async fn idle_h2(&self, within: Duration) {
        // Until the first request tells the protocol: one atomic load whenever the connection's task is
        // polled, which every request makes it be, and no timer (a timer polled on every wake cost
        // HTTP/1.1 ~250 instructions a request). HTTP/1.1 then waits for nothing.
        let h2 = std::future::poll_fn(|_| match self.protocol.load(Ordering::Relaxed) {
            0 => Poll::Pending,
            protocol => Poll::Ready(protocol == HTTP2),
        })
        .await;
        if !h2 {
            return std::future::pending().await;
        }
        let mut seen = None;
        loop {
            tokio::time::sleep(within).await;
            let started = self.started.load(Ordering::Relaxed);
            if seen == Some(started) && self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            }
            seen = Some(started);
        }
    }
}

/// One HTTP/2 request in flight on its connection's [`Activity`].
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection that must send a whole first request head within a deadline
/// (`listen.header_read_timeout`, from the connection's start or the end of its TLS handshake). hyper's
/// own header timeout starts with a request's first byte, and the HTTP/1-or-2 detection before it waits
/// without one (as long as the bytes so far could begin HTTP/2's preface, `P` alone), so a client that
/// connects and then stays silent, or sends a byte or a bare HTTP/2 preface, would hold a connection slot
/// for ever: `max_connections` such sockets would shut the proxy. Once a request has come (its protocol is known),
/// reads pass straight through.
struct FirstBytes<I> {
    io: I,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    activity: Arc<Activity>,
}

impl<I> FirstBytes<I> {
    fn new(io: I, within: Duration, activity: Arc<Activity>) -> Self {
        FirstBytes {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            activity,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstBytes<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.deadline.is_some() && this.activity.protocol.load(Ordering::Relaxed) != 0 {
            this.deadline = None;
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => Poll::Ready(r),
            Poll::Pending => {
                if this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready())
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request head within listen.header_read_timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstBytes<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One accept loop.
struct Acceptor {
    shared: Arc<Shared>,
    builder: auto::Builder<TokioExecutor>,
    permits: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: std::time::Duration,
}

impl Acceptor {
    async fn run(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        loop {
            // The cap: wait for a free slot before accepting, so excess clients queue in the backlog.
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = stop.changed() => return,
            };
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let shared = self.shared.clone();
            let builder = self.builder.clone();
            let tls = self.tls.clone();
            let handshake_timeout = self.handshake_timeout;
            let stop = stop.clone();
            self.shared.connections.spawn(async move {
                let slot = Some(Arc::new(permit));
                shared.metrics.connections.inc();
                let result = match tls {
                    None => {
                        let conn = Connection {
                            peer,
                            tls: false,
                            slot,
                            ja4: None,
                        };
                        serve(&builder, stream, shared.clone(), conn, handshake_timeout, stop).await
                    }
                    Some(acceptor) => {
                        // Fingerprint the ClientHello before rustls consumes it.
                        let ja4 = super::ja4::peek_ja4(&stream, handshake_timeout)
                            .await
                            .map(Arc::from);
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls_stream)) => {
                                let conn = Connection {
                                    peer,
                                    tls: true,
                                    slot,
                                    ja4,
                                };
                                serve(
                                    &builder,
                                    tls_stream,
                                    shared.clone(),
                                    conn,
                                    handshake_timeout,
                                    stop,
                                )
                                .await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                Ok(())
                            }
                            Err(_) => Ok(()),
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                shared.metrics.connections.dec();
            });
        }
    }
}

/// Linux only: the test counts system calls in `/proc/thread-self/io`.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Write system calls this thread has made so far (`/proc/thread-self/io`).
    fn writes_so_far() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("Linux task I/O accounting");
        io.lines()
            .find_map(|l| l.strip_prefix("syscw: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("a syscw line")
    }

    /// Registers `n` timers due in `due`, each polled once, and returns the write system calls that took.
    async fn writes_to_register(n: usize, due: Duration) -> u64 {
        let mut sleeps: Vec<_> = (0..n).map(|_| Box::pin(tokio::time::sleep(due))).collect();
        let before = writes_so_far();
        for s in &mut sleeps {
            let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(s.as_mut().poll(cx))).await;
            assert!(polled.is_pending());
        }
        writes_so_far() - before
    }

    #[test]
    fn with_the_timer_floor_registering_request_timers_wakes_no_driver() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Without the floor (tokio 1.x): after the driver parked with no timer left, every new timer
            // is "earlier than the next wake" and costs an eventfd write.
            tokio::time::sleep(Duration::from_millis(2)).await;
            let bare = writes_to_register(20, Duration::from_secs(10)).await;
            assert!(
                bare > 0,
                "tokio no longer wakes its driver per new timer (tokio#5207): the floor can go"
            );
            let (stop_tx, stop_rx) = watch::channel(false);
            let floor = tokio::spawn(timer_floor(stop_rx));
            // Let the floor's first tick pass and the driver park once with the floor's next tick planned
            // (the yield lets the floor re-arm and the driver look again, should both have fired together).
            tokio::time::sleep(Duration::from_millis(2)).await;
            tokio::task::yield_now().await;
            let floored = writes_to_register(20, Duration::from_secs(10)).await;
            assert_eq!(
                floored, 0,
                "timers registered above the floor woke the driver ({bare} without it)"
            );
            stop_tx.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(1), floor)
                .await
                .expect("the floor ends on stop")
                .unwrap();
        });
    }
}
