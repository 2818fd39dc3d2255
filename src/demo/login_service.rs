//! The demo's built-in login backend: a small, real HTTP sign-in service that `authward demo` protects.
//!
//! A JSON API (`/api/login`, `/api/signup`, `/api/sms/send`, `/api/sms/verify`, `/api/me`) and a few
//! plain HTML pages (`/`,
//! `/login`, `/welcome`, `/signup`). It sits outside the proxy's request path: the demo and the
//! integration tests run it as an ordinary upstream. Every table is bounded, request bodies are capped,
//! and passwords, tokens and SMS codes are never logged or echoed.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Largest request body accepted, in bytes.
const MAX_BODY: usize = 64 * 1024;
/// Bound on each table (signed-up users, issued tokens, sent-SMS log); the oldest entry is dropped first.
const MAX_ENTRIES: usize = 10_000;
/// Longest password accepted at sign-up, so that stored users stay small.
const MAX_PASSWORD_CHARS: usize = 256;
/// How long shutdown waits for in-flight requests before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Built-in users as (username, password, phone); never evicted, and their names cannot be signed up.
const DEMO_USERS: &[(&str, &str, &str)] = &[
    ("alice", "correct-horse-battery", "+14155550100"),
    ("bob", "password123", "+14155550101"),
];

/// Headers on every HTML page: nothing external may load, and the pages cannot be framed or cached.
const HTML_HEADERS: &[(HeaderName, &str)] = &[
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    ),
];

/// One SMS the service "sent": the destination number and when. The message text is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    pub phone: String,
    pub at: SystemTime,
}

/// The demo login service: signed-up users, issued tokens and the sent-SMS log. Cheap to clone.
#[derive(Clone, Default)]
pub struct LoginService {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Signed-up users: username → password (the built-in users live in [`DEMO_USERS`]).
    users: Mutex<Bounded>,
    /// Token → username; a token is both an API bearer token and the value of the `session` cookie.
    tokens: Mutex<Bounded>,
    sms: Mutex<VecDeque<SentSms>>,
    /// Phone → the latest code texted to it, until it is used (then empty).
    codes: Mutex<Bounded>,
}

/// A string map holding at most [`MAX_ENTRIES`] keys; inserting beyond that drops the oldest key.
#[derive(Default)]
struct Bounded {
    map: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Bounded {
    fn insert(&mut self, key: String, value: String) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_ENTRIES {
            if let Some(oldest) = self.order.pop_front() {
                self.map.remove(&oldest);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&String> {
        self.map.get(key)
    }
}

/// Every failure the service answers with, rendered as `{"error": <code>, "message": <Display>}`.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("the request body must be a JSON object with the expected string fields")]
    InvalidRequest,
    #[error("the request body could not be read")]
    UnreadableBody,
    #[error("the request body is larger than 64 KiB")]
    TooLarge,
    #[error("username or password is incorrect")]
    InvalidCredentials,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("username must be 3 to 32 characters: letters, digits, '_', '.' or '-'")]
    InvalidUsername,
    #[error("password must be 8 to 256 characters long")]
    InvalidPassword,
    #[error("phone must be in E.164 format: '+' followed by 8 to 15 digits")]
    InvalidPhone,
    #[error("this username is already taken")]
    UserExists,
    #[error("the code is wrong or has expired")]
    InvalidCode,
    #[error("no such resource")]
    NotFound,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn into_response(self) -> Response<Full<Bytes>> {
        let (status, code) = match self {
            Self::InvalidRequest | Self::UnreadableBody => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::InvalidUsername => (StatusCode::BAD_REQUEST, "invalid_username"),
            Self::InvalidPassword => (StatusCode::BAD_REQUEST, "invalid_password"),
            Self::InvalidPhone => (StatusCode::BAD_REQUEST, "invalid_phone"),
            Self::UserExists => (StatusCode::CONFLICT, "user_exists"),
            Self::InvalidCode => (StatusCode::BAD_REQUEST, "invalid_code"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        json_response(status, &json!({ "error": code, "message": self.to_string() }))
    }
}

type Reply = Result<Response<Full<Bytes>>, ApiError>;

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct SignupRequest {
    username: String,
    password: String,
    phone: String,
}

#[derive(Deserialize)]
struct SmsRequest {
    phone: String,
}

#[derive(Deserialize)]
struct VerifyRequest {
    phone: String,
    code: String,
}

impl LoginService {
    /// A service knowing the demo users `alice` and `bob`, with no tokens and an empty SMS log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves HTTP/1.1 and h2c on `listener` until `shutdown` completes, then stops accepting and lets
    /// in-flight requests finish (waiting at most `SHUTDOWN_GRACE`).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "demo login service listening");
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        // A reset connection or descriptor exhaustion: back off briefly, keep serving.
                        tracing::warn!(%err, "demo login service: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let service = self.clone();
            let handler = service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(req).await) }
            });
            let conn = graceful.watch(
                builder
                    .serve_connection(TokioIo::new(stream), handler)
                    .into_owned(),
            );
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(%err, "demo login service: connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("demo login service: in-flight requests did not finish in time");
        }
        tracing::info!(%addr, "demo login service stopped");
        Ok(())
    }

    /// The SMS sent so far (the latest 10 000 at most), oldest first.
    pub fn sms_sent(&self) -> Vec<SentSms> {
        self.inner.sms.lock().iter().cloned().collect()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.route(req).await.unwrap_or_else(ApiError::into_response)
    }

    async fn route(&self, req: Request<Incoming>) -> Reply {
        let (parts, body) = req.into_parts();
        match (&parts.method, parts.uri.path()) {
            (&Method::GET, "/") => Ok(html(&login_page("", None))),
            (&Method::POST, "/login") => self.form_login(&read_body(body).await?),
            (&Method::GET, "/welcome") => Ok(self.welcome(&parts.headers)),
            (&Method::GET, "/signup") => Ok(html(&signup_page(None))),
            (&Method::POST, "/signup") => Ok(self.form_signup(&read_body(body).await?)),
            (&Method::POST, "/api/login") => {
                let req: LoginRequest = parse_json(&read_body(body).await?)?;
                let token = self.login(&req.username, &req.password)?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "token": token, "username": req.username }),
                ))
            }
            (&Method::POST, "/api/signup") => {
                let req: SignupRequest = parse_json(&read_body(body).await?)?;
                let masked = self.signup(&req.username, &req.password, &req.phone)?;
                let delivery = json!({ "destination": masked, "medium": "SMS" });
                let answer = json!({ "username": req.username, "code_delivery": delivery });
                Ok(json_response(StatusCode::CREATED, &answer))
            }
            (&Method::POST, "/api/sms/send") => {
                let req: SmsRequest = parse_json(&read_body(body).await?)?;
                validate_phone(&req.phone)?;
                let answer = json!({ "sent": true, "destination": self.send_code(&req.phone) });
                Ok(json_response(StatusCode::OK, &answer))
            }
            (&Method::POST, "/api/sms/verify") => {
                let req: VerifyRequest = parse_json(&read_body(body).await?)?;
                self.verify_code(&req.phone, &req.code)?;
                Ok(json_response(StatusCode::OK, &json!({ "verified": true })))
            }
            (&Method::GET, "/api/me") => {
                let username = bearer_token(&parts.headers)
                    .and_then(|token| self.session_user(token))
                    .ok_or(ApiError::Unauthorized)?;
                Ok(json_response(StatusCode::OK, &json!({ "username": username })))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// Checks the credentials and issues a fresh token. Unknown users and wrong passwords look alike.
    fn login(&self, username: &str, password: &str) -> Result<String, ApiError> {
        let matches = {
            let users = self.inner.users.lock();
            let demo = DEMO_USERS
                .iter()
                .find(|(name, ..)| *name == username)
                .map(|(_, pw, _)| *pw);
            demo.or_else(|| users.get(username).map(String::as_str)) == Some(password)
        };
        if !matches {
            // No username here: people type passwords into the username field.
            tracing::info!("demo login failed");
            return Err(ApiError::InvalidCredentials);
        }
        let bytes: [u8; 16] = rand::rng().random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.inner
            .tokens
            .lock()
            .insert(token.clone(), username.to_owned());
        tracing::info!(username, "demo login succeeded");
        Ok(token)
    }

    fn session_user(&self, token: &str) -> Option<String> {
        self.inner.tokens.lock().get(token).cloned()
    }

    /// Validates and creates a user, then texts a confirmation code; returns the masked phone number.
    fn signup(&self, username: &str, password: &str, phone: &str) -> Result<String, ApiError> {
        // Letters of any script and the punctuation of real names (O'Brien, Anne-Marie).
        let username_ok = |c: char| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '\'');
        if !(3..=32).contains(&username.chars().count()) || !username.chars().all(username_ok) {
            return Err(ApiError::InvalidUsername);
        }
        if !(8..=MAX_PASSWORD_CHARS).contains(&password.chars().count()) {
            return Err(ApiError::InvalidPassword);
        }
        validate_phone(phone)?;
        {
            let mut users = self.inner.users.lock();
            if DEMO_USERS.iter().any(|(name, ..)| *name == username) || users.get(username).is_some() {
                return Err(ApiError::UserExists);
            }
            users.insert(username.to_owned(), password.to_owned());
        }
        tracing::info!(username, "demo user signed up");
        Ok(self.send_code(phone))
    }

    /// "Sends" a six-digit code by SMS and returns the masked number. The sent-SMS log keeps the number
    /// and time only; the code is kept for `/api/sms/verify` alone, and never logged or returned.
    fn send_code(&self, phone: &str) -> String {
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000u32));
        deliver_sms(phone, &format!("Your authward demo code is {code}"));
        self.inner.codes.lock().insert(phone.to_owned(), code);
        let mut sms = self.inner.sms.lock();
        sms.push_back(SentSms {
            phone: phone.to_owned(),
            at: SystemTime::now(),
        });
        if sms.len() > MAX_ENTRIES {
            sms.pop_front();
        }
        let masked = mask_phone(phone);
        tracing::info!(destination = %masked, "demo SMS sent");
        masked
    }

    /// Checks the latest code texted to `phone`; a code works once.
    fn verify_code(&self, phone: &str, code: &str) -> Result<(), ApiError> {
        let mut codes = self.inner.codes.lock();
        let expected = codes.get(phone).filter(|c| !c.is_empty());
        if expected.is_none_or(|e| e.as_bytes() != code.as_bytes()) {
            return Err(ApiError::InvalidCode);
        }
        codes.insert(phone.to_owned(), String::new());
        Ok(())
    }

    fn form_login(&self, body: &[u8]) -> Reply {
        let (username, password) = (form_field(body, "username"), form_field(body, "password"));
        let Ok(token) = self.login(&username, &password) else {
            return Ok(html(&login_page(&username, Some("Wrong username or password."))));
        };
        let cookie = format!("session={token}; Path=/; HttpOnly; SameSite=Lax");
        let cookie = HeaderValue::from_str(&cookie).map_err(|_| ApiError::Internal)?;
        let mut response = redirect("/welcome");
        response.headers_mut().insert(header::SET_COOKIE, cookie);
        Ok(response)
    }

    fn welcome(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let user = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| pair.trim().strip_prefix("session="))
            .and_then(|token| self.session_user(token));
        match user {
            Some(user) => {
                let body = format!("<h1>Welcome, {}!</h1><p>You are signed in.</p>", escape(&user));
                html(&page("Welcome", &body))
            }
            None => redirect("/"),
        }
    }

    fn form_signup(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let [username, password, phone] = ["username", "password", "phone"].map(|f| form_field(body, f));
        match self.signup(&username, &password, &phone) {
            Ok(masked) => html(&page(
                "Account created",
                &format!(
                    "<h1>Account created</h1><p>Welcome, {}. We sent a confirmation code by SMS to {}.</p>\
                     <p><a href=\"/\">Sign in</a></p>",
                    escape(&username),
                    escape(&masked)
                ),
            )),
            Err(err) => html(&signup_page(Some(&err.to_string()))),
        }
    }
}

/// Stand-in for an SMS gateway: a real one would deliver `_text`; the demo keeps nothing of it.
fn deliver_sms(_phone: &str, _text: &str) {}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::TooLarge),
        Err(_) => Err(ApiError::UnreadableBody),
    }
}

/// Parses a JSON body. The parser's message is not echoed: it may quote the input, a password included.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|_| ApiError::InvalidRequest)
}

fn form_field(body: &[u8], name: &str) -> String {
    let mut pairs = form_urlencoded::parse(body);
    pairs
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn validate_phone(phone: &str) -> Result<(), ApiError> {
    let digits = phone.strip_prefix('+').unwrap_or_default();
    let valid = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(()).ok_or(ApiError::InvalidPhone)
}

/// `+14155550100` → `+1415*****00`: keeps the `+`, the next four digits and the last two.
fn mask_phone(phone: &str) -> String {
    let len = phone.len();
    phone
        .char_indices()
        .map(|(i, c)| if i < 5 || i + 2 >= len { c } else { '*' })
        .collect()
}

fn response(
    status: StatusCode,
    headers: &[(HeaderName, &'static str)],
    body: String,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    response(
        status,
        &[(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
}

fn html(body: &str) -> Response<Full<Bytes>> {
    response(StatusCode::OK, HTML_HEADERS, body.to_owned())
}

fn redirect(location: &'static str) -> Response<Full<Bytes>> {
    response(
        StatusCode::SEE_OTHER,
        &[(header::LOCATION, location)],
        String::new(),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · authward demo</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; display: flex; justify-content: center; }}
main {{ background: #fff; margin-top: 10vh; padding: 2rem 2.5rem; border-radius: 8px; width: 20rem;
  box-shadow: 0 1px 4px #0002; }}
label {{ display: block; margin: .8rem 0; font-size: .9rem; }}
input {{ display: block; width: 100%; box-sizing: border-box; margin-top: .25rem; padding: .5rem;
  border: 1px solid #ccc; border-radius: 4px; }}
button {{ width: 100%; margin-top: .5rem; padding: .6rem; border: 0; border-radius: 4px;
  background: #2d5be3; color: #fff; font-size: 1rem; cursor: pointer; }}
.error {{ color: #b00020; }}
</style></head>
<body><main>{body}</main></body></html>
"#
    )
}

fn error_paragraph(error: Option<&str>) -> String {
    error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default()
}

fn login_page(username: &str, error: Option<&str>) -> String {
    let body = format!(
        r#"<h1>Sign in</h1>{error}
<form method="post" action="/login">
<label>Username <input name="username" autocomplete="username" required value="{username}"></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
<p>No account yet? <a href="/signup">Sign up</a></p>"#,
        error = error_paragraph(error),
        username = escape(username),
    );
    page("Sign in", &body)
}

fn signup_page(error: Option<&str>) -> String {
    let body = format!(
        r#"<h1>Sign up</h1>{error}
<form method="post" action="/signup">
<label>Username <input name="username" autocomplete="username" required minlength="3" maxlength="32"></label>
<label>Password
  <input name="password" type="password" autocomplete="new-password" required minlength="8"></label>
<label>Phone <input name="phone" type="tel" autocomplete="tel" required placeholder="+14155550100"></label>
<button type="submit">Create account</button>
</form>
<p>Already registered? <a href="/">Sign in</a></p>"#,
        error = error_paragraph(error),
    );
    page("Sign up", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    struct Running {
        base: String,
        service: LoginService,
        client: reqwest::Client,
        stop: oneshot::Sender<()>,
        task: JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let service = LoginService::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(service.clone().serve(listener, async move {
            let _ = stopped.await;
        }));
        let redirects = reqwest::redirect::Policy::none();
        let client = reqwest::Client::builder()
            .redirect(redirects)
            .build()
            .expect("client");
        Running {
            base,
            service,
            client,
            stop,
            task,
        }
    }

    impl Running {
        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        async fn send_json(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
            let response = request.send().await.expect("send");
            (response.status(), response.json().await.expect("json body"))
        }

        async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
            Self::send_json(self.client.post(self.url(path)).json(&body)).await
        }

        async fn post_form(&self, path: &str, form: &'static str) -> reqwest::Response {
            let request = self.client.post(self.url(path)).body(form);
            let request = request.header("content-type", "application/x-www-form-urlencoded");
            request.send().await.expect("send")
        }

        async fn me(&self, token: Option<&str>) -> (StatusCode, Value) {
            let request = self.client.get(self.url("/api/me"));
            Self::send_json(match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            })
            .await
        }
    }

    fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
        response.headers().get(name).and_then(|value| value.to_str().ok())
    }

    #[tokio::test]
    async fn json_login_issues_a_token_that_api_me_accepts() {
        let s = start().await;
        let alice = json!({"username": "alice", "password": "correct-horse-battery"});
        let (status, body) = s.post_json("/api/login", alice).await;
        assert_eq!((status, &body["username"]), (StatusCode::OK, &json!("alice")));
        let token = body["token"].as_str().expect("token");
        assert!(
            token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "{token}"
        );

        assert_eq!(
            s.me(Some(token)).await,
            (StatusCode::OK, json!({"username": "alice"}))
        );
        let (status, body) = s.me(None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"))
        );
        let forged = s.me(Some("0123456789abcdef0123456789abcdef")).await;
        assert_eq!(forged.0, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn json_login_failures_look_identical() {
        let s = start().await;
        let wrong_password = s
            .post_json("/api/login", json!({"username": "bob", "password": "nope"}))
            .await;
        let unknown_user = s
            .post_json("/api/login", json!({"username": "eve", "password": "nope"}))
            .await;
        assert_eq!(wrong_password.0, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong_password.1["error"], "invalid_credentials");
        assert_eq!(wrong_password, unknown_user);
        let bob = s
            .post_json(
                "/api/login",
                json!({"username": "bob", "password": "password123"}),
            )
            .await;
        assert_eq!(bob.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn malformed_or_incomplete_json_is_a_400() {
        let s = start().await;
        let (status, body) = Running::send_json(s.client.post(s.url("/api/login")).body("{not json")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
        );
        assert!(body["message"].is_string());
        let (status, _) = s.post_json("/api/login", json!({"username": "alice"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = s
            .post_json("/api/sms/send", json!({"phone": 14155550100u64}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn form_login_sets_a_session_cookie_and_welcomes_the_user() {
        let s = start().await;
        let response = s
            .post_form("/login", "username=alice&password=correct-horse-battery")
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(header(&response, "location"), Some("/welcome"));
        let cookie = header(&response, "set-cookie").expect("cookie");
        let session = cookie
            .strip_suffix("; Path=/; HttpOnly; SameSite=Lax")
            .expect("cookie attributes");
        assert_eq!(session.len(), "session=".len() + 32);

        let welcome = s
            .client
            .get(s.url("/welcome"))
            .header("cookie", session)
            .send()
            .await;
        let welcome = welcome.expect("send");
        assert_eq!(welcome.status(), StatusCode::OK);
        assert!(welcome.text().await.expect("text").contains("Welcome, alice!"));

        let anonymous = s.client.get(s.url("/welcome")).send().await.expect("send");
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
        assert_eq!(header(&anonymous, "location"), Some("/"));
    }

    #[tokio::test]
    async fn form_login_failure_shows_the_form_again() {
        let s = start().await;
        let response = s
            .post_form("/login", "username=%3Cb%3Ealice&password=wrong")
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "set-cookie").is_none());
        let page = response.text().await.expect("text");
        assert!(page.contains(r#"action="/login""#) && page.contains("Wrong username or password."));
        assert!(
            page.contains(r#"value="&lt;b&gt;alice""#),
            "the username is echoed, escaped"
        );
    }

    #[tokio::test]
    async fn html_pages_are_served() {
        let s = start().await;
        for (path, needle) in [("/", r#"href="/signup""#), ("/signup", r#"action="/signup""#)] {
            let response = s.client.get(s.url(path)).send().await.expect("send");
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                header(&response, "content-type"),
                Some("text/html; charset=utf-8")
            );
            assert!(response.text().await.expect("text").contains(needle), "{path}");
        }
    }

    #[tokio::test]
    async fn signup_creates_a_user_and_texts_a_code() {
        let s = start().await;
        let carol = json!({"username": "carol", "password": "s3cret-pass", "phone": "+14155550123"});
        let (status, body) = s.post_json("/api/signup", carol.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        let delivery = json!({"destination": "+1415*****23", "medium": "SMS"});
        assert_eq!(body, json!({"username": "carol", "code_delivery": delivery}));
        let sent = s.service.sms_sent();
        assert_eq!((sent.len(), sent[0].phone.as_str()), (1, "+14155550123"));

        let (status, body) = s.post_json("/api/signup", carol).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::CONFLICT, Some("user_exists"))
        );
        let alice = json!({"username": "alice", "password": "whatever-else", "phone": "+14155550123"});
        assert_eq!(s.post_json("/api/signup", alice).await.0, StatusCode::CONFLICT);
        assert_eq!(s.service.sms_sent().len(), 1, "failed sign-ups send nothing");

        let login = json!({"username": "carol", "password": "s3cret-pass"});
        assert_eq!(s.post_json("/api/login", login).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn signup_validates_its_input() {
        let s = start().await;
        for (username, password, phone, code) in [
            ("dave", "long-enough", "4155550123", "invalid_phone"),
            ("dave", "long-enough", "+1415", "invalid_phone"),
            ("dave", "long-enough", "+1415555012a", "invalid_phone"),
            ("dave", "short", "+14155550123", "invalid_password"),
            ("d", "long-enough", "+14155550123", "invalid_username"),
            ("dave smith", "long-enough", "+14155550123", "invalid_username"),
        ] {
            let request = json!({"username": username, "password": password, "phone": phone});
            let (status, body) = s.post_json("/api/signup", request).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{username}"
            );
        }
        assert!(s.service.sms_sent().is_empty());
    }

    #[tokio::test]
    async fn form_signup_works_too() {
        let s = start().await;
        let form = "username=erin&password=long-enough&phone=%2B447700900123";
        let response = s.post_form("/signup", form).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.expect("text").contains("+4477******23"));
        let again = s.post_form("/signup", form).await.text().await.expect("text");
        assert!(again.contains("already taken") && again.contains(r#"action="/signup""#));
        assert_eq!(s.service.sms_sent().len(), 1);
    }

    #[tokio::test]
    async fn sms_send_is_recorded() {
        let s = start().await;
        let (status, body) = s
            .post_json("/api/sms/send", json!({"phone": "+14155550100"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"sent": true, "destination": "+1415*****00"}));
        let (status, body) = s.post_json("/api/sms/send", json!({"phone": "+1"})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_phone"))
        );
        let sent = s.service.sms_sent();
        assert_eq!((sent.len(), sent[0].phone.as_str()), (1, "+14155550100"));
        assert!(sent[0].at <= SystemTime::now());
    }

    #[tokio::test]
    async fn a_texted_code_verifies_once() {
        let s = start().await;
        let phone = json!("+14155550123");
        s.post_json("/api/sms/send", json!({"phone": phone})).await;
        let code = s.service.inner.codes.lock().get("+14155550123").cloned().unwrap();
        let wrong = if code == "000000" { "000001" } else { "000000" };
        let (status, body) = s
            .post_json("/api/sms/verify", json!({"phone": phone, "code": wrong}))
            .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_code"))
        );
        let verify = json!({"phone": phone, "code": code});
        let (status, body) = s.post_json("/api/sms/verify", verify.clone()).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"verified": true})));
        assert_eq!(
            s.post_json("/api/sms/verify", verify).await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn unknown_routes_are_404_json() {
        let s = start().await;
        for request in [s.client.get(s.url("/nope")), s.client.get(s.url("/api/login"))] {
            let (status, body) = Running::send_json(request).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found"))
            );
        }
    }

    #[tokio::test]
    async fn oversize_bodies_are_rejected_with_413() {
        let s = start().await;
        let body = format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(MAX_BODY));
        let (status, body) = Running::send_json(s.client.post(s.url("/api/login")).body(body)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"], "payload_too_large");
    }

    #[tokio::test]
    async fn graceful_shutdown_finishes_in_flight_requests_and_returns() {
        let s = start().await;
        // Start a request whose body is still on its way when shutdown is signalled.
        let body = r#"{"username":"alice","password":"correct-horse-battery"}"#;
        let head = format!(
            "POST /api/login HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let address = s.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write head");
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.stop.send(()).expect("service still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(body.as_bytes()).await.expect("write body");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read answer");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

        let result = tokio::time::timeout(Duration::from_secs(5), s.task).await;
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "serve returns Ok after shutdown"
        );
        let refused = reqwest::Client::new().get(format!("{}/", s.base)).send().await;
        assert!(refused.is_err(), "no longer accepting connections");
    }

    #[test]
    fn tables_stay_bounded() {
        let mut table = Bounded::default();
        for i in 0..MAX_ENTRIES + 5 {
            table.insert(i.to_string(), String::new());
        }
        assert_eq!((table.map.len(), table.order.len()), (MAX_ENTRIES, MAX_ENTRIES));
        assert!(table.get("4").is_none() && table.get("5").is_some());

        let service = LoginService::new();
        for _ in 0..MAX_ENTRIES + 5 {
            service.send_code("+14155550100");
        }
        assert_eq!(service.sms_sent().len(), MAX_ENTRIES);
    }

    #[test]
    fn phone_masking() {
        assert_eq!(mask_phone("+14155550100"), "+1415*****00");
        assert_eq!(mask_phone("+12345678"), "+1234**78");
    }
}
