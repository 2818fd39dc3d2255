//! Test harness: the real `authward` binary on free loopback ports, in-process upstreams, and clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

pub type TestBody = BoxBody<Bytes, Infallible>;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The authward binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_authward")
}

/// A running `authward serve`, killed on drop.
pub struct Authward {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Authward {
    /// Writes `yaml` (with `{PORT}`, `{ADMIN}` and `{DIR}` filled in) and starts the proxy on it.
    pub fn start(yaml: &str) -> Authward {
        Self::start_with(yaml, &[])
    }

    /// [`Authward::start`] with extra environment variables. A port picked free can be taken before the
    /// proxy binds it (by another test's listener or outgoing connection), so a start that fails on an
    /// address in use is tried again on other ports.
    pub fn start_with(yaml: &str, env: &[(&str, &str)]) -> Authward {
        let mut tries = 0;
        loop {
            let mut aw = Self::spawn(yaml, env);
            match aw.wait_healthy() {
                Ok(()) => return aw,
                Err(log) if log.contains("Address already in use") && tries < 4 => tries += 1,
                Err(log) => panic!("{log}"),
            }
        }
    }

    fn spawn(yaml: &str, env: &[(&str, &str)]) -> Authward {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let config = dir.path().join("authward.yaml");
        std::fs::write(&config, fill(yaml, port, admin_port, dir.path())).unwrap();
        let log = dir.path().join("authward.log");
        let mut cmd = Command::new(bin());
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(&config);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Authward {
            child,
            port,
            admin_port,
            dir,
            config,
            log,
        }
    }

    /// Waits until both listeners accept; else what went wrong, with the proxy's log.
    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("authward exited with {status}: {}", self.logs()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("authward did not start: {}", self.logs()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// The admin listener's Prometheus text.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rewrites the config file (placeholders filled in as at start).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("authward.yaml.tmp");
        std::fs::write(&tmp, fill(yaml, self.port, self.admin_port, self.dir.path())).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The JSON access-log lines written so far.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "authward::access")
            .collect()
    }
}

impl Drop for Authward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fill(yaml: &str, port: u16, admin: u16, dir: &Path) -> String {
    yaml.replace("{PORT}", &port.to_string())
        .replace("{ADMIN}", &admin.to_string())
        .replace("{DIR}", &dir.display().to_string())
        .replace("{SHARED}", concat!(env!("CARGO_MANIFEST_DIR"), "/../shared"))
        .replace("{REPO}", env!("CARGO_MANIFEST_DIR"))
}

/// An in-process upstream that echoes requests, with routes for slow, streamed and held answers.
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Upstream {
    /// Starts the echo upstream; `name` comes back in an `x-upstream` header.
    pub async fn start(name: &'static str) -> Upstream {
        Self::start_with(name, None).await
    }

    /// Starts the echo upstream behind TLS with this server config.
    pub async fn start_with(
        name: &'static str,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Upstream {
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = &mut rx => return,
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| echo(name, req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Upstream { addr, stop: Some(tx) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn query_param(req: &Request<hyper::body::Incoming>, name: &str) -> Option<u64> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

async fn echo(
    name: &'static str,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    let ms = query_param(&req, "ms").unwrap_or(0);
    if path.starts_with("/slow") || path.starts_with("/hold") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path.starts_with("/stream") {
        let chunks = query_param(&req, "chunks").unwrap_or(10);
        let size = query_param(&req, "size").unwrap_or(1024) as usize;
        let stream =
            futures_util::stream::iter((0..chunks).map(move |i| {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'a' + (i % 26) as u8; size])))
            }));
        let mut r = Response::new(BoxBody::new(StreamBody::new(stream)));
        r.headers_mut().insert("x-upstream", name.parse().unwrap());
        return Ok(r);
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let version = format!("{:?}", req.version());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = if path.starts_with("/status/") {
        path.trim_start_matches("/status/").parse().unwrap_or(200)
    } else {
        200
    };
    let json = serde_json::json!({
        "upstream": name, "method": method, "path": path, "query": query, "version": version,
        "headers": headers, "body_len": body.len(), "body": String::from_utf8_lossy(&body),
    });
    let mut r = Response::new(BoxBody::new(Full::new(Bytes::from(json.to_string()))));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    r.headers_mut().insert(
        "x-authward-decision",
        "upstream-must-not-set-this".parse().unwrap(),
    );
    Ok(r)
}

/// The sum of every series of a metric `family` in Prometheus text (0 when none is there).
pub fn metric_total(metrics: &str, family: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The value of one series, named with its labels as Prometheus writes them (`name{label="v"}`).
pub fn metric_value(metrics: &str, series: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The values of one header in an echo answer.
pub fn echoed_headers(echo: &serde_json::Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == name)
        .map(|p| p[1].as_str().unwrap().to_string())
        .collect()
}

/// A plain HTTP/1.1 client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Polls `f` until it returns true or `within` passes.
pub async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A test server: `handler` answers each request from its head and whole body.
pub struct Served {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts a test server on a free loopback port; it stops when the returned value is dropped.
pub async fn serve<F>(handler: F) -> Served
where
    F: Fn(hyper::http::request::Parts, Bytes) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let handler = std::sync::Arc::new(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                _ = &mut rx => return,
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok::<_, Infallible>(handler(parts, body))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Served { addr, _stop: tx }
}

/// A Cognito-style answer: `status` with this JSON as `application/x-amz-json-1.1`.
pub fn amz_json(status: u16, answer: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap()
}

/// `data` compressed as gzip.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzEncoder::new(data, flate2::Compression::default())
        .read_to_end(&mut out)
        .unwrap();
    out
}
