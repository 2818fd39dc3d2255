//! Route profiles: which requests are login operations, what they carry, and how the upstream answered.

pub mod file;
pub mod pointer;
pub mod stage;

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::form::Multipart;
use file::{
    FileCookieName, FileOutcomeRule, FilePath, FileProfile, FileScalar, FileSource, FlowStep, MfaEnrollment,
    MfaStyle, OneOrMany,
};

/// Longest extracted value in bytes; longer values are truncated (at a character boundary).
pub const MAX_FIELD_LEN: usize = 1024;

/// The login-related operation a profiled request performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Signing in with a password (or its first step).
    SignIn,
    /// Creating an account.
    SignUp,
    /// Changing the password while signed in.
    PasswordChange,
    /// Starting or completing a forgotten-password reset.
    PasswordReset,
    /// Asking the backend to send an SMS code.
    SmsSend,
    /// Checking an SMS code outside sign-in (phone confirmation).
    SmsVerify,
    /// Answering a second-factor or sign-in challenge.
    MfaVerify,
    /// Signing out.
    SignOut,
    /// Anything else worth profiling.
    Other,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 9] = [
        Operation::SignIn,
        Operation::SignUp,
        Operation::PasswordChange,
        Operation::PasswordReset,
        Operation::SmsSend,
        Operation::SmsVerify,
        Operation::MfaVerify,
        Operation::SignOut,
        Operation::Other,
    ];

    /// The snake_case name used in config and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::SignIn => "sign_in",
            Operation::SignUp => "sign_up",
            Operation::PasswordChange => "password_change",
            Operation::PasswordReset => "password_reset",
            Operation::SmsSend => "sms_send",
            Operation::SmsVerify => "sms_verify",
            Operation::MfaVerify => "mfa_verify",
            Operation::SignOut => "sign_out",
            Operation::Other => "other",
        }
    }
}

/// What the upstream's answer says about the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The operation succeeded.
    Success,
    /// The operation failed (wrong credentials, rejected code, ...).
    Failure,
    /// The operation goes on with a challenge (MFA, custom auth).
    Challenge,
    /// The answer says neither (server error, throttling, unreadable body).
    Unknown,
}

impl Outcome {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Challenge => "challenge",
            Outcome::Unknown => "unknown",
        }
    }
}

/// A value that must never be logged; `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the few places that must see it (the compromised-password check).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The values extracted from a profiled request: absent when no source gave a non-empty, well-formed
/// value; longer than [`MAX_FIELD_LEN`] bytes, truncated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// The account name, as sent.
    pub username: Option<String>,
    /// The password presented, or the new one for sign-up and password changes.
    pub password: Option<Secret>,
    /// The phone number an SMS goes to, as sent.
    pub phone: Option<String>,
    /// The app client's id.
    pub client_id: Option<String>,
    /// Where in the body the password was found, so that inspection can leave exactly that out.
    pub password_at: Option<BodyLocation>,
    /// A multi-step flow's session value.
    pub session: Option<Secret>,
    /// The challenge a flow step answers.
    pub challenge_name: Option<String>,
}

/// A place in a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyLocation {
    /// A JSON pointer.
    Json(Arc<str>),
    /// A form field: urlencoded, or a multipart/form-data text part.
    Form(Arc<str>),
}

/// Why profiles did not compile; `index` is the offending entry of the list given to `compile` and `path`
/// its field (`profiles[2].fields.username`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// A value that does not compile.
    #[error("{path}: {message}")]
    Invalid {
        index: usize,
        path: String,
        message: String,
    },
    /// Two profiles with one name.
    #[error("{path}: duplicate profile name \"{name}\" (first used by profiles[{first}])")]
    DuplicateName {
        index: usize,
        path: String,
        name: String,
        first: usize,
    },
}

impl ProfileError {
    /// The index of the offending profile in the list given to `Profiles::compile`.
    pub fn index(&self) -> usize {
        match self {
            ProfileError::Invalid { index, .. } | ProfileError::DuplicateName { index, .. } => *index,
        }
    }

    /// The field path of the offending entry.
    pub fn path(&self) -> &str {
        match self {
            ProfileError::Invalid { path, .. } | ProfileError::DuplicateName { path, .. } => path,
        }
    }
}

/// An `Invalid` error; `Profiles::compile` sets the index.
fn invalid(path: impl Into<String>, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        index: 0,
        path: path.into(),
        message: message.into(),
    }
}

// === impl Profiles ===

/// The compiled, immutable set of profiles, indexed for a fast miss.
#[derive(Debug, Default)]
pub struct Profiles {
    profiles: Vec<Arc<Profile>>,
    /// Union of the profiles' methods; `None` when one of them takes any method.
    methods: Option<Vec<Method>>,
    /// Profiles by exact path (without a trailing `/`), in config order.
    exact: HashMap<Box<str>, Vec<usize>>,
    /// Profiles with a prefix, glob or regex path, in config order.
    other: Vec<usize>,
}

impl Profiles {
    /// Compiles and indexes the profiles, checking every field.
    pub fn compile(files: &[FileProfile]) -> Result<Profiles, ProfileError> {
        let mut out = Profiles {
            methods: Some(Vec::new()),
            ..Profiles::default()
        };
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            let base = format!("profiles[{i}]");
            if let Some(&first) = names.get(f.name.as_str()) {
                return Err(ProfileError::DuplicateName {
                    index: i,
                    path: format!("{base}.name"),
                    name: f.name.clone(),
                    first,
                });
            }
            names.insert(&f.name, i);
            let p = Profile::compile(f, &base).map_err(|mut e| {
                if let ProfileError::Invalid { index, .. } = &mut e {
                    *index = i;
                }
                e
            })?;
            match (&mut out.methods, &p.methods) {
                (Some(all), Some(ms)) => ms.iter().for_each(|m| {
                    if !all.contains(m) {
                        all.push(m.clone())
                    }
                }),
                (all, _) => *all = None,
            }
            let mut other = false;
            for path in &p.paths {
                match path {
                    PathMatch::Exact(e) => {
                        let ids = out.exact.entry(e.as_str().into()).or_default();
                        if ids.last() != Some(&i) {
                            ids.push(i);
                        }
                    }
                    _ => other = true,
                }
            }
            if other {
                out.other.push(i);
            }
            out.profiles.push(Arc::new(p));
        }
        Ok(out)
    }

    /// Whether there are no profiles at all.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// The profile with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profiles whose method, path (without the query; normalized by the caller) and headers
    /// match, in config order; allocates nothing on a miss.
    pub fn candidates(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Candidates> {
        if self.methods.as_ref().is_some_and(|ms| !method_in(ms, method)) {
            return None;
        }
        let folded = fold(path);
        let exact = self.exact.get(trim_slash(&folded)).map_or(&[][..], Vec::as_slice);
        let (mut i, mut j, mut found) = (0, 0, Found::None);
        // Merge the two sorted index lists to keep config order.
        loop {
            let next = match (exact.get(i), self.other.get(j)) {
                (Some(&a), Some(&b)) if a <= b => {
                    i += 1;
                    j += usize::from(a == b);
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (None, None) => break,
            };
            let p = &self.profiles[next];
            if p.head_matches(method, path, &folded, headers) {
                found = match found {
                    Found::None => Found::One([p.clone()]),
                    Found::One([first]) => Found::Many(vec![first, p.clone()]),
                    Found::Many(mut all) => {
                        all.push(p.clone());
                        Found::Many(all)
                    }
                };
            }
        }
        (!found.is_empty()).then_some(Candidates { profiles: found })
    }
}

/// Whether `method` is one of `ms`, ignoring case: Werkzeug upper-cases the method a client sends, so that
/// `post /login` signs in there as a POST would.
fn method_in(ms: &[Method], method: &Method) -> bool {
    ms.contains(method)
        || ms
            .iter()
            .any(|m| m.as_str().eq_ignore_ascii_case(method.as_str()))
}

fn trim_slash(path: &str) -> &str {
    path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path)
}

/// A path as profiles match it: ASCII lower case, each segment without its `;parameters` (and the dot
/// segments and empty segments that leaves resolved, as Tomcat does: `/api/x/..;/login` is `/api/login`
/// there), and the last without a `.json` or `.xml` format suffix. Backends route such spellings to the
/// same handler (`/API/Login` in Express or ASP.NET, `/api/login;jsessionid=1` in Tomcat or Jetty,
/// `/api/login.json` in Rails), and a login must not go unrecognised because of one; where a backend
/// does not, the request is only inspected as a login it is not. Most paths need no change and are not
/// copied.
fn fold(path: &str) -> Cow<'_, str> {
    let folded = if path.bytes().any(|b| b.is_ascii_uppercase() || b == b';') {
        let mut out = String::with_capacity(path.len());
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            let segment = segment.split(';').next().unwrap_or_default();
            out.extend(segment.chars().map(|c| c.to_ascii_lowercase()));
        }
        if out
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            out = resolve_dots(&out);
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(path)
    };
    match format_suffix(&folded) {
        0 => folded,
        n => match folded {
            Cow::Borrowed(p) => Cow::Borrowed(&p[..p.len() - n]),
            Cow::Owned(mut p) => {
                p.truncate(p.len() - n);
                Cow::Owned(p)
            }
        },
    }
}

/// The path with its `.` and `..` segments resolved and its empty ones dropped (a trailing slash kept).
fn resolve_dots(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in kept {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    out
}

/// The length of the format suffix (`.json`, `.xml`) that ends the path's last segment, 0 for none (or
/// for a segment that is nothing else).
fn format_suffix(path: &str) -> usize {
    const FORMATS: [&str; 2] = [".json", ".xml"];
    let last = path.rsplit('/').next().unwrap_or_default();
    FORMATS
        .iter()
        .find(|f| last.len() > f.len() && last.ends_with(*f))
        .map_or(0, |f| f.len())
}

// === impl Candidates ===

/// The profiles whose request head matched, in config order.
#[derive(Debug, Clone)]
pub struct Candidates {
    profiles: Found,
}

/// The candidate profiles: one (the usual case) held inline, more in a list.
#[derive(Debug, Clone)]
enum Found {
    None,
    One([Arc<Profile>; 1]),
    Many(Vec<Arc<Profile>>),
}

impl std::ops::Deref for Found {
    type Target = [Arc<Profile>];

    fn deref(&self) -> &[Arc<Profile>] {
        match self {
            Found::None => &[],
            Found::One(one) => one,
            Found::Many(all) => all,
        }
    }
}

/// A request taken by a profile, with the fields extracted from it.
#[derive(Debug, Clone)]
pub struct Matched {
    pub profile: Arc<Profile>,
    pub fields: Fields,
    /// The request body as JSON (a byte order mark skipped), when a source read it and it parsed: the
    /// web ACL reads this document rather than parse the body again.
    pub json: Option<JsonBody>,
    /// A form or query field that was read came more than once with different values: backends disagree
    /// on which one counts (PHP and Django read the last, others the first), so the fields authward
    /// extracted may not be the ones the backend acts on.
    pub ambiguous: bool,
}

/// A request body parsed as JSON. It holds the password, so `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct JsonBody(Value);

impl JsonBody {
    /// The document.
    pub fn value(&self) -> &Value {
        &self.0
    }
}

impl fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Matched {
    /// The labels a profiled request carries for the web ACL: `authward:operation:<op>` and
    /// `authward:profile:<name>`.
    pub fn labels(&self) -> [String; 2] {
        self.profile.labels.clone()
    }
}

/// Whether a label (or namespace) is one that the profile stage adds by itself.
pub fn is_builtin_label(label: &str) -> bool {
    label.starts_with("authward:operation:") || label.starts_with("authward:profile:")
}

/// Why a label test under `authward:operation:` can never match: the profile stage adds
/// `authward:operation:<op>` only for the operations it knows, so a typo such as
/// `authward:operation:signin` is a mistake, not a label some rule adds. `None` for the labels and
/// namespaces it does add, and for every label outside `authward:operation:`.
pub fn unknown_builtin_label(label: &str, namespace: bool) -> Option<String> {
    let op = label.strip_prefix("authward:operation:")?;
    let known = || {
        Operation::ALL
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if namespace {
        return (!op.is_empty()).then(|| {
            format!(
                "authward adds no label under `{label}` (only authward:operation:<op>, op one of {})",
                known()
            )
        });
    }
    (!Operation::ALL.iter().any(|o| o.as_str() == op))
        .then(|| format!("`{op}` is not an operation authward knows (one of {})", known()))
}

impl Candidates {
    /// The matched profiles.
    pub fn profiles(&self) -> &[Arc<Profile>] {
        &self.profiles
    }

    /// The smallest per-profile body cap among the candidates, if any sets one.
    pub fn body_limit(&self) -> Option<u64> {
        self.profiles.iter().filter_map(|p| p.body_limit).min()
    }

    /// Whether any candidate reads the request body (body conditions or body fields).
    pub fn needs_body(&self) -> bool {
        self.profiles.iter().any(|p| p.needs_body)
    }

    /// The first candidate whose body conditions hold, with its fields extracted; an error when the body
    /// is one that a candidate reads (JSON, a multipart form) but authward cannot read as every backend
    /// would (see [`Unreadable`]).
    pub fn resolve(
        &self,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Option<Matched>, Unreadable> {
        let req = Request {
            query,
            headers,
            body,
            json: OnceCell::new(),
            multipart: OnceCell::new(),
            conflict: Cell::new(false),
            json_declared: declares_json(headers),
        };
        if self.profiles.iter().any(|p| p.reads_json)
            && json_expected(req.json_declared, body)
            && req.json().is_none()
        {
            return Err(Unreadable::Json);
        }
        if self.profiles.iter().any(|p| p.reads_form) && req.multipart() == Some(&Multipart::Malformed) {
            return Err(Unreadable::Multipart);
        }
        let Some(p) = self.profiles.iter().find(|p| {
            (p.body.iter()).all(|(srcs, t)| t.matches(req.agreed(srcs).map(|(v, _)| v).as_deref()))
        }) else {
            // No candidate's body conditions hold; if one read a value that two places disagree on, the
            // backend may read the other and take the request as that profile's: ambiguous, not unprofiled.
            let first = self.profiles.first().filter(|_| req.conflict.get());
            return Ok(first.map(|p| Matched {
                profile: p.clone(),
                fields: Fields::default(),
                json: None,
                ambiguous: true,
            }));
        };
        let [username, password, phone, client_id, session, challenge_name] =
            p.fields.each_ref().map(|srcs| req.agreed(srcs));
        let password_at = password.as_ref().and_then(|(_, s)| match s {
            Source::Json(pointer) => Some(BodyLocation::Json(pointer.clone())),
            Source::Form(name) => Some(BodyLocation::Form(name.clone())),
            _ => None,
        });
        let fields = Fields {
            username: username.map(|(v, _)| v),
            password: password.map(|(v, _)| Secret(v)),
            phone: phone.map(|(v, _)| v),
            client_id: client_id.map(|(v, _)| v),
            password_at,
            session: session.map(|(v, _)| Secret(v)),
            challenge_name: challenge_name.map(|(v, _)| v),
        };
        Ok(Some(Matched {
            profile: p.clone(),
            fields,
            ambiguous: req.conflict.get(),
            json: req.json.into_inner().flatten().map(JsonBody),
        }))
    }
}

/// Why a profiled request's body cannot be read as its profile reads it. Such a request gets 400 and is
/// not forwarded: the backend may well read fields from it (Python's `json` takes `NaN` and `1e400`,
/// Werkzeug takes bare LF multipart lines) that authward, reading none, could neither check nor count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error(
        "the request body is not JSON that authward reads: one standard JSON document in UTF-8, nested at \
         most 128 deep, with nothing after it"
    )]
    Json,
    #[error(
        "the multipart/form-data body is not one that every form parser reads alike: one boundary, CRLF \
         line ends, each part named once and to the end"
    )]
    Multipart,
}

/// Whether a body is meant as JSON: its content type says so (`application/json`, a `+json` type,
/// Cognito's `application/x-amz-json-1.1`), it starts with `{` or `[` (after a byte order mark and
/// blanks: frameworks such as Flask's `get_json(force=True)` parse whatever the type), or it is UTF-16 or
/// UTF-32 (a NUL among its first four bytes, or a UTF-16 byte order mark), which Python and Jackson
/// detect and read.
fn json_expected(json_declared: bool, body: &[u8]) -> bool {
    let text = body
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(body)
        .trim_ascii_start();
    let Some(&first) = text.first() else {
        return false;
    };
    json_declared
        || first == b'{'
        || first == b'['
        || body.iter().take(4).any(|&b| b == 0)
        || body.starts_with(b"\xFE\xFF")
        || body.starts_with(b"\xFF\xFE")
}

// === impl Profile ===

/// A profile's part in a multi-step sign-in.
#[derive(Debug, Clone)]
pub struct Flow {
    pub step: FlowStep,
    pub custom: bool,
    pub response_session: Option<String>,
    pub response_challenge: Option<String>,
}

/// A fixed answer (status, headers, body), compiled from a profile's template.
#[derive(Debug)]
pub struct FixedResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, http::HeaderValue)>,
    pub body: bytes::Bytes,
}

impl FixedResponse {
    /// Compiles a profile's answer template; `path` names it in errors.
    pub fn compile(r: &file::FileResponse, path: &str) -> Result<Self, ProfileError> {
        let status = StatusCode::from_u16(r.status)
            .ok()
            .filter(|s| !s.is_informational())
            .ok_or_else(|| invalid(format!("{path}.status"), "not an HTTP status from 200 to 599"))?;
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| {
                let name = header_name(k, &format!("{path}.headers"))?;
                let value = http::HeaderValue::from_str(v)
                    .map_err(|_| invalid(format!("{path}.headers.{k}"), "not a valid header value"))?;
                Ok((name, value))
            })
            .collect::<Result<_, ProfileError>>()?;
        Ok(FixedResponse {
            status,
            headers,
            body: bytes::Bytes::from(r.body.clone()),
        })
    }

    /// The answer as a response.
    pub fn to_response(&self) -> http::Response<crate::proxy::body::Body> {
        let mut resp = http::Response::new(crate::proxy::body::full(self.body.clone()));
        *resp.status_mut() = self.status;
        for (k, v) in &self.headers {
            resp.headers_mut().append(k.clone(), v.clone());
        }
        resp
    }
}

/// One compiled route profile.
#[derive(Debug)]
pub struct Profile {
    name: String,
    operation: Operation,
    methods: Option<Vec<Method>>,
    paths: Vec<PathMatch>,
    headers: Vec<(HeaderName, TextTest)>,
    body: Vec<(Vec<Source>, TextTest)>,
    body_limit: Option<u64>,
    /// Sources of username, password, phone, client id, session and challenge name, in that order.
    fields: [Vec<Source>; 6],
    outcome: Option<Verdicts>,
    flow: Option<Flow>,
    block_response: Option<Arc<FixedResponse>>,
    mfa: MfaStyle,
    mfa_enrollment: MfaEnrollment,
    challenge_response: Option<Arc<FixedResponse>>,
    enumeration: Option<Arc<Enumeration>>,
    needs_body: bool,
    /// Some source (a field or a body condition) reads the body as JSON, or as a form.
    reads_json: bool,
    reads_form: bool,
    /// `authward:operation:<op>` and `authward:profile:<name>`, made once (see [`Matched::labels`]).
    labels: [String; 2],
}

/// A profile's user-enumeration protection: the upstream's two revealing answers and the one sent instead.
#[derive(Debug)]
pub struct Enumeration {
    unknown_user: Vec<Rule>,
    wrong_password: Vec<Rule>,
    /// The answer sent for both.
    pub answer: FixedResponse,
    /// Neither answer leaves sooner than this after the request arrived.
    pub min_duration: std::time::Duration,
}

/// Which revealing answer the upstream gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revealing {
    UnknownUser,
    WrongPassword,
}

impl Revealing {
    /// The snake_case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Revealing::UnknownUser => "unknown_user",
            Revealing::WrongPassword => "wrong_password",
        }
    }
}

impl Enumeration {
    /// Whether the answer is one of the two declared ones (a rule that needs an unreadable body holds not).
    pub fn classify(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<Revealing> {
        let resp = Response {
            status,
            headers,
            body,
            json: OnceCell::new(),
        };
        if any_holds(&self.unknown_user, &resp) == Some(true) {
            Some(Revealing::UnknownUser)
        } else if any_holds(&self.wrong_password, &resp) == Some(true) {
            Some(Revealing::WrongPassword)
        } else {
            None
        }
    }

    fn reads_body(&self) -> bool {
        self.unknown_user
            .iter()
            .chain(&self.wrong_password)
            .any(|r| !r.json.is_empty())
    }

    fn compile(f: &file::FileEnumeration, base: &str) -> Result<Enumeration, ProfileError> {
        let rules = |rs: &OneOrMany<FileOutcomeRule>, key: &str| {
            let path = format!("{base}.{key}");
            (nonempty(rs, &path, "rule")?.iter().enumerate())
                .map(|(i, r)| Rule::compile(r, &rs.path(&path, i)))
                .collect::<Result<Vec<_>, _>>()
        };
        let answer = match &f.answer {
            Some(a) => FixedResponse::compile(a, &format!("{base}.answer"))?,
            None => FixedResponse {
                status: StatusCode::UNAUTHORIZED,
                headers: vec![(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                )],
                body: bytes::Bytes::from_static(
                    br#"{"error":"invalid_credentials","message":"Incorrect username or password."}"#,
                ),
            },
        };
        let min_duration = f.min_duration.get();
        if min_duration > std::time::Duration::from_secs(10) {
            return Err(invalid(format!("{base}.min_duration"), "at most 10s"));
        }
        Ok(Enumeration {
            unknown_user: rules(&f.unknown_user, "unknown_user")?,
            wrong_password: rules(&f.wrong_password, "wrong_password")?,
            answer,
            min_duration,
        })
    }
}

#[derive(Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Glob(glob::Pattern),
    Regex(Regex),
}

#[derive(Debug)]
enum TextTest {
    Equals(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

#[derive(Debug)]
enum Source {
    /// Shared with each request's [`BodyLocation`] of the password.
    Json(Arc<str>),
    Form(Arc<str>),
    Query(String),
    Header(HeaderName),
    Cookie(String),
    Basic {
        password: bool,
    },
    JsonAttr {
        list: String,
        name: String,
        name_key: String,
        value_key: String,
    },
}

#[derive(Debug)]
struct Verdicts {
    success: Vec<Rule>,
    challenge: Vec<Rule>,
    failure: Option<Vec<Rule>>,
}

#[derive(Debug)]
struct Rule {
    status: Vec<StatusMatch>,
    json: Vec<(String, TextTest)>,
    headers: Vec<(HeaderName, TextTest)>,
    set_cookie: Option<TextTest>,
    redirect: Option<Option<TextTest>>,
}

#[derive(Debug, Clone, Copy)]
enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl Profile {
    /// The profile's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operation its requests perform.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// Its part in a multi-step sign-in, if any.
    pub fn flow(&self) -> Option<&Flow> {
        self.flow.as_ref()
    }

    /// The answer a client gets when authward refuses this operation, if the profile sets one.
    pub fn block_response(&self) -> Option<&Arc<FixedResponse>> {
        self.block_response.as_ref()
    }

    /// How its sign-ins are stepped up to MFA.
    pub fn mfa_style(&self) -> MfaStyle {
        self.mfa
    }

    /// When its sign-ins offer a user with no factor to enroll one.
    pub fn mfa_enrollment(&self) -> MfaEnrollment {
        self.mfa_enrollment
    }

    /// The answer template that stands in for a held sign-in, if the profile sets one.
    pub fn challenge_response(&self) -> Option<&Arc<FixedResponse>> {
        self.challenge_response.as_ref()
    }

    /// The user-enumeration protection, if the profile declares it.
    pub fn enumeration(&self) -> Option<&Arc<Enumeration>> {
        self.enumeration.as_ref()
    }

    /// Whether matching or extraction reads the request body.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// Whether classifying the answer reads its body (only then should the proxy buffer it).
    pub fn outcome_needs_body(&self) -> bool {
        let rules = |v: &Verdicts| {
            let failure = v.failure.iter().flatten();
            v.success
                .iter()
                .chain(&v.challenge)
                .chain(failure)
                .any(|r| !r.json.is_empty())
        };
        self.outcome.as_ref().is_some_and(rules) || self.enumeration.as_ref().is_some_and(|e| e.reads_body())
    }

    /// Reads the upstream's answer. Verdicts are tried from the most specific: failure, challenge,
    /// success; a rule that needs a body it cannot read (absent, compressed) makes the answer `Unknown`
    /// unless an earlier verdict already held. Without a `failure` rule, anything else below 500 fails.
    pub fn classify(&self, status: StatusCode, headers: &HeaderMap, body: Option<&[u8]>) -> Outcome {
        let Some(v) = &self.outcome else {
            return Outcome::Unknown;
        };
        let encoded = headers
            .get(CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        let resp = Response {
            status,
            headers,
            body: body.filter(|_| !encoded),
            json: OnceCell::new(),
        };
        let failure = v.failure.as_deref().unwrap_or(&[]);
        let mut undecided = false;
        for (rules, outcome) in [
            (failure, Outcome::Failure),
            (&v.challenge, Outcome::Challenge),
            (&v.success, Outcome::Success),
        ] {
            match any_holds(rules, &resp) {
                Some(true) if undecided => return Outcome::Unknown,
                Some(true) => return outcome,
                None => undecided = true,
                Some(false) => {}
            }
        }
        if undecided || v.failure.is_some() || status.as_u16() >= 500 {
            Outcome::Unknown
        } else {
            Outcome::Failure
        }
    }

    /// Whether the method, the path (`folded` as [`fold`] makes it) and the headers match.
    fn head_matches(&self, method: &Method, path: &str, folded: &str, headers: &HeaderMap) -> bool {
        self.methods.as_ref().is_none_or(|ms| method_in(ms, method))
            && self.paths.iter().any(|p| p.matches(path, folded))
            && self
                .headers
                .iter()
                .all(|(name, t)| t.matches_header(headers, name))
    }

    fn compile(f: &FileProfile, base: &str) -> Result<Profile, ProfileError> {
        let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if f.name.is_empty() || f.name.len() > 64 || !f.name.chars().all(name_ok) {
            let msg = format!(
                "invalid profile name \"{}\" (use 1 to 64 of a-z, 0-9, _ and -)",
                f.name
            );
            return Err(invalid(format!("{base}.name"), msg));
        }
        let m = &f.matcher;
        let methods = match &m.methods {
            None => None,
            Some(ms) if ms.is_empty() => {
                return Err(invalid(
                    format!("{base}.match.methods"),
                    "list at least one method, or omit `methods`",
                ));
            }
            Some(ms) => Some(
                ms.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|_| {
                            invalid(
                                format!("{base}.match.methods[{i}]"),
                                format!("invalid method \"{s}\""),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let paths = nonempty(&m.path, &format!("{base}.match.path"), "path")?
            .iter()
            .enumerate()
            .map(|(i, p)| PathMatch::compile(p, &m.path.path(&format!("{base}.match.path"), i)))
            .collect::<Result<_, _>>()?;
        let headers = (m.headers.iter().enumerate())
            .map(|(i, h)| {
                let path = format!("{base}.match.headers[{i}]");
                Ok((
                    header_name(&h.name, &path)?,
                    test(&path, &h.equals, &h.prefix, &h.regex, h.present)?,
                ))
            })
            .collect::<Result<_, _>>()?;
        let body: Vec<_> = (m.body.iter().enumerate())
            .map(|(i, b)| {
                let path = format!("{base}.match.body[{i}]");
                let field = format!("{path}.field");
                let srcs = (nonempty(&b.field, &field, "source")?.iter().enumerate())
                    .map(|(j, s)| Source::compile(s, &b.field.path(&field, j)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((srcs, test(&path, &b.equals, &b.prefix, &b.regex, b.present)?))
            })
            .collect::<Result<_, _>>()?;
        let fl = &f.fields;
        let mut fields: [Vec<Source>; 6] = Default::default();
        for (slot, (key, srcs)) in fields.iter_mut().zip([
            ("username", &fl.username),
            ("password", &fl.password),
            ("phone", &fl.phone),
            ("client_id", &fl.client_id),
            ("session", &fl.session),
            ("challenge_name", &fl.challenge_name),
        ]) {
            if let Some(srcs) = srcs {
                let path = format!("{base}.fields.{key}");
                for (i, s) in nonempty(srcs, &path, "source")?.iter().enumerate() {
                    slot.push(Source::compile(s, &srcs.path(&path, i))?);
                }
            }
        }
        let body_limit = match f.body_limit {
            Some(b) if b.0 == 0 => {
                return Err(invalid(format!("{base}.body_limit"), "must be larger than 0"));
            }
            b => b.map(|b| b.0),
        };
        let outcome = f
            .outcome
            .as_ref()
            .map(|o| Verdicts::compile(o, &format!("{base}.outcome")))
            .transpose()?;
        let sources = || body.iter().flat_map(|(s, _)| s).chain(fields.iter().flatten());
        let needs_body = sources().any(Source::reads_body);
        let reads_json = sources().any(|s| matches!(s, Source::Json(_) | Source::JsonAttr { .. }));
        let reads_form = sources().any(|s| matches!(s, Source::Form(_)));
        let flow = f.flow.as_ref().map(|fl| Flow {
            step: fl.step,
            custom: fl.custom,
            response_session: fl.response_session.clone(),
            response_challenge: fl.response_challenge.clone(),
        });
        if let Some(fl) = &flow {
            if fl.step == FlowStep::Continue && fields[4].is_empty() {
                return Err(invalid(
                    format!("{base}.fields.session"),
                    "a `continue` flow step needs `fields.session` to find its flow",
                ));
            }
            if fl.response_session.is_none() {
                return Err(invalid(
                    format!("{base}.flow.response_session"),
                    "a flow step needs `response_session`, the JSON pointer to the session in a challenge answer",
                ));
            }
        }
        let block_response = f
            .block_response
            .as_ref()
            .map(|r| FixedResponse::compile(r, &format!("{base}.block_response")).map(Arc::new))
            .transpose()?;
        let challenge_response = f
            .challenge_response
            .as_ref()
            .map(|r| FixedResponse::compile(r, &format!("{base}.challenge_response")).map(Arc::new))
            .transpose()?;
        if challenge_response.is_some() && !matches!(f.mfa, MfaStyle::Challenge | MfaStyle::Cognito) {
            return Err(invalid(
                format!("{base}.challenge_response"),
                "only styles `challenge` and `cognito` send a challenge answer",
            ));
        }
        if f.mfa_enrollment != MfaEnrollment::Off {
            if !matches!(f.mfa, MfaStyle::Challenge | MfaStyle::Page) || f.operation != Operation::SignIn {
                return Err(invalid(
                    format!("{base}.mfa_enrollment"),
                    "only sign-in profiles of styles `challenge` and `page` enroll factors",
                ));
            }
            let shows_secret = |t: &FixedResponse| {
                let body = String::from_utf8_lossy(&t.body);
                body.contains("{{secret}}") && body.contains("{{otpauth_uri}}")
            };
            if challenge_response.as_deref().is_some_and(|t| !shows_secret(t)) {
                return Err(invalid(
                    format!("{base}.challenge_response"),
                    "with `mfa_enrollment`, the body must show `{{secret}}` and `{{otpauth_uri}}`",
                ));
            }
        }
        let enumeration = f
            .enumeration
            .as_ref()
            .map(|e| Enumeration::compile(e, &format!("{base}.enumeration")).map(Arc::new))
            .transpose()?;
        let (name, operation) = (f.name.clone(), f.operation);
        let labels = [
            format!("authward:operation:{}", operation.as_str()),
            format!("authward:profile:{name}"),
        ];
        Ok(Profile {
            labels,
            flow,
            block_response,
            mfa: f.mfa,
            mfa_enrollment: f.mfa_enrollment,
            challenge_response,
            enumeration,
            name,
            operation,
            methods,
            paths,
            headers,
            body,
            body_limit,
            fields,
            outcome,
            needs_body,
            reads_json,
            reads_form,
        })
    }
}

fn nonempty<'a, T>(v: &'a OneOrMany<T>, path: &str, what: &str) -> Result<&'a [T], ProfileError> {
    match v.as_slice() {
        [] => Err(invalid(path, format!("list at least one {what}"))),
        s => Ok(s),
    }
}

fn header_name(name: &str, path: &str) -> Result<HeaderName, ProfileError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(path, format!("invalid header name \"{name}\"")))
}

/// Compiles the one test of an `equals | prefix | regex | present` group; `None` when none is given.
fn opt_test(
    path: &str,
    equals: &Option<FileScalar>,
    prefix: &Option<String>,
    regex: &Option<crate::config::types::Pattern>,
    present: Option<bool>,
) -> Result<Option<TextTest>, ProfileError> {
    let tests = [
        equals.as_ref().map(|e| TextTest::Equals(e.0.clone())),
        prefix.as_ref().map(|p| TextTest::Prefix(p.clone())),
        regex.as_ref().map(|r| TextTest::Regex(r.0.clone())),
        present.map(TextTest::Present),
    ];
    let mut given = tests.into_iter().flatten();
    match (given.next(), given.next()) {
        (t, None) => Ok(t),
        _ => Err(invalid(path, "give only one of equals, prefix, regex, present")),
    }
}

fn test(
    path: &str,
    equals: &Option<FileScalar>,
    prefix: &Option<String>,
    regex: &Option<crate::config::types::Pattern>,
    present: Option<bool>,
) -> Result<TextTest, ProfileError> {
    opt_test(path, equals, prefix, regex, present)?
        .ok_or_else(|| invalid(path, "give one of equals, prefix, regex, present"))
}

fn check_pointer(p: &str, path: &str) -> Result<String, ProfileError> {
    let bad_escape = p.split('~').skip(1).any(|s| !s.starts_with(['0', '1']));
    if !p.starts_with('/') {
        Err(invalid(
            path,
            format!("invalid JSON pointer \"{p}\" (must start with /)"),
        ))
    } else if bad_escape {
        Err(invalid(
            path,
            format!("invalid JSON pointer \"{p}\" (~ must be followed by 0 or 1)"),
        ))
    } else {
        Ok(p.to_owned())
    }
}

impl PathMatch {
    fn compile(p: &FilePath, path: &str) -> Result<PathMatch, ProfileError> {
        let slash = |s: &str| match s.starts_with('/') {
            true => Ok(()),
            false => Err(invalid(path, format!("path \"{s}\" must start with /"))),
        };
        Ok(match p {
            FilePath::Exact(s) => slash(s).map(|_| PathMatch::Exact(fold(trim_slash(s)).into_owned()))?,
            FilePath::Prefix(s) => slash(s).map(|_| PathMatch::Prefix(fold(s).into_owned()))?,
            FilePath::Glob(s) => PathMatch::Glob(
                glob::Pattern::new(&s.to_ascii_lowercase())
                    .map_err(|e| invalid(path, format!("invalid glob \"{s}\": {}", e.msg)))?,
            ),
            FilePath::Regex(r) => PathMatch::Regex(r.0.clone()),
        })
    }

    /// Exact paths, prefixes and globs are matched as [`fold`] makes them; a regex on the path as sent, or
    /// on its folded form.
    fn matches(&self, path: &str, folded: &str) -> bool {
        const GLOB: glob::MatchOptions = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        match self {
            PathMatch::Exact(e) => trim_slash(folded) == e,
            PathMatch::Prefix(p) => folded.starts_with(p.as_str()),
            // A trailing slash is ignored as for exact paths (`/oauth/token/` is `/**/token`).
            PathMatch::Glob(g) => g.matches_with(folded, GLOB) || g.matches_with(trim_slash(folded), GLOB),
            PathMatch::Regex(r) => r.is_match(path) || (folded != path && r.is_match(folded)),
        }
    }
}

impl TextTest {
    /// Tests an extracted value; `present` means there and not empty.
    fn matches(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (TextTest::Present(p), v) => v.is_some_and(|v| !v.is_empty()) == *p,
            (_, None) => false,
            (TextTest::Equals(e), Some(v)) => v == e,
            (TextTest::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (TextTest::Regex(r), Some(v)) => r.is_match(v),
        }
    }

    /// Tests a header: `present` means sent at all; other tests hold when any value passes.
    fn matches_header(&self, headers: &HeaderMap, name: &HeaderName) -> bool {
        match self {
            TextTest::Present(p) => headers.contains_key(name) == *p,
            t => headers
                .get_all(name)
                .iter()
                .any(|v| t.matches(std::str::from_utf8(v.as_bytes()).ok())),
        }
    }

    /// Tests a JSON value: `present` means there, not null and not `""`; others read scalars as text.
    fn matches_json(&self, v: Option<&Value>) -> bool {
        match self {
            TextTest::Present(p) => v.is_some_and(|v| !v.is_null() && v.as_str() != Some("")) == *p,
            t => t.matches(v.and_then(scalar_text).as_deref()),
        }
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A non-empty value capped at [`MAX_FIELD_LEN`] bytes.
fn capped(mut s: String) -> Option<String> {
    if s.len() > MAX_FIELD_LEN {
        let mut n = MAX_FIELD_LEN;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    (!s.is_empty()).then_some(s)
}

/// Parses JSON from a body, ignoring a UTF-8 byte order mark; `None` when it is not JSON.
fn parse_json(body: &[u8]) -> Option<Value> {
    serde_json::from_slice(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)).ok()
}

// === impl Source ===

/// The request parts that sources read; the body's JSON, or its multipart fields, are parsed at most once.
struct Request<'a> {
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    json: OnceCell<Option<Value>>,
    multipart: OnceCell<Option<Multipart>>,
    /// Set when a field read had differing values (see [`Matched::ambiguous`]).
    conflict: Cell<bool>,
    /// The content type declares JSON (read once for every form source).
    json_declared: bool,
}

impl Request<'_> {
    fn json(&self) -> Option<&Value> {
        self.json.get_or_init(|| parse_json(self.body)).as_ref()
    }

    /// The body's multipart form, when its content type says it is one (parsed once).
    fn multipart(&self) -> Option<&Multipart> {
        self.multipart
            .get_or_init(|| crate::form::read_strict(self.headers, self.body))
            .as_ref()
    }

    /// A form field: from a `multipart/form-data` body's text parts (as a browser's `FormData` sends a
    /// form, and form backends read it alike), else from an urlencoded body; none from a body whose content
    /// type declares JSON, which no backend reads as a form.
    fn form(&self, name: &str) -> Option<String> {
        if self.json_declared {
            return None;
        }
        match self.multipart() {
            Some(Multipart::Fields(fields)) => {
                if fields.iter().any(|(k, _)| bracketed(k, name)) {
                    self.conflict.set(true);
                }
                self.single(fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()))
            }
            Some(Multipart::Malformed) => None,
            None => self.urlencoded(self.body, name, b"&"),
        }
    }

    /// A field of an urlencoded string split at `separators`. A field sent as a list or an object
    /// (`phone[]=..`, `phone[0]=..`, which PHP, Rails and Express's `qs` read as such and hand on) is a
    /// conflict: authward reads text and would check nothing.
    fn urlencoded(&self, raw: &[u8], name: &str, separators: &[u8]) -> Option<String> {
        let keys = raw
            .split(|b| separators.contains(b))
            .map(|pair| pair.split(|&b| b == b'=').next().unwrap_or_default());
        if keys
            .filter(|k| k.contains(&b'[') || k.contains(&b'%'))
            .any(|k| bracketed(&percent_decode(k), name))
        {
            self.conflict.set(true);
        }
        self.single(urlencoded_values(raw, name, separators))
    }

    /// A query field. Rack (Rails and Sinatra before Rack 3), Python before 3.9.2 and Go before 1.17
    /// split a query at `;` too: where that finds another value than `&` alone, the request is ambiguous.
    fn query_field(&self, name: &str) -> Option<String> {
        let raw = self.query?.as_bytes();
        let value = self.urlencoded(raw, name, b"&");
        if raw.contains(&b';') {
            let also = self.urlencoded(raw, name, b"&;");
            if also != value {
                self.conflict.set(true);
            }
            return value.or(also);
        }
        value
    }

    /// The value of the first of `srcs` that has one, noting a conflict when a later one has another:
    /// backends read one place or another (passport-local the body before the query, Spring the query
    /// first; a JSON API and a form parser the same body differently), so a field in two places with two
    /// values may be read as either.
    fn agreed<'s>(&self, srcs: &'s [Source]) -> Option<(String, &'s Source)> {
        let mut found: Option<(String, &Source)> = None;
        for s in srcs {
            let Some(v) = self.get(s) else { continue };
            match &found {
                None => found = Some((v, s)),
                Some((first, first_src)) if !same_value(first, first_src, &v, s) => self.conflict.set(true),
                Some(_) => {}
            }
        }
        found
    }

    /// The first of a field's values, noting a conflict when a later one differs.
    fn single(&self, mut values: impl Iterator<Item = String>) -> Option<String> {
        let first = values.next()?;
        if values.any(|v| v != first) {
            self.conflict.set(true);
        }
        Some(first)
    }

    /// The source's value, non-empty and capped; absent on anything malformed.
    fn get(&self, src: &Source) -> Option<String> {
        let v = match src {
            Source::Json(p) => {
                let mut conflict = false;
                let v = pointer::get_folded(self.json()?, p, &mut conflict);
                // A list or an object where text belongs: backends hand it on (Express to Twilio, to a
                // MongoDB query), authward would check nothing.
                if conflict || v.is_some_and(|v| v.is_array() || v.is_object()) {
                    self.conflict.set(true);
                }
                v.and_then(scalar_text)
            }
            Source::Form(name) => self.form(name),
            Source::Query(name) => self.query_field(name),
            Source::Header(name) => self
                .headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(str::to_owned),
            Source::Cookie(name) => cookie_get(self.headers, name),
            Source::Basic { password } => {
                basic_auth(self.headers).map(|(u, p)| if *password { p } else { u })
            }
            Source::JsonAttr {
                list,
                name,
                name_key,
                value_key,
            } => {
                // An attribute named twice with different values: authward would check one, a backend
                // that builds a map of the list keeps the other (Cognito's `UserAttributes`).
                let list = pointer::get(self.json()?, list)?.as_array()?;
                let values = list
                    .iter()
                    .filter(|e| e.get(name_key).and_then(Value::as_str) == Some(name.as_str()))
                    .filter_map(|e| e.get(value_key));
                let mut first: Option<&Value> = None;
                for v in values {
                    if v.is_array() || v.is_object() || first.is_some_and(|f| f != v) {
                        self.conflict.set(true);
                    }
                    first = first.or(Some(v));
                }
                first.and_then(scalar_text)
            }
        };
        v.and_then(capped)
    }
}

impl Source {
    fn compile(s: &FileSource, path: &str) -> Result<Source, ProfileError> {
        let named = |n: &str| match n.is_empty() {
            true => Err(invalid(path, "the name must not be empty")),
            false => Ok(n.to_owned()),
        };
        Ok(match s {
            FileSource::Json(p) => Source::Json(check_pointer(p, path)?.into()),
            FileSource::Form(n) => Source::Form(named(n)?.into()),
            FileSource::Query(n) => Source::Query(named(n)?),
            FileSource::Header(n) => Source::Header(header_name(n, path)?),
            FileSource::Cookie(n) => Source::Cookie(named(n)?),
            FileSource::BasicAuth(part) => Source::Basic {
                password: *part == file::FileBasicPart::Password,
            },
            FileSource::JsonAttr(a) => Source::JsonAttr {
                list: check_pointer(&a.list, &format!("{path}.list"))?,
                name: named(&a.name)?,
                name_key: named(&a.name_key)?,
                value_key: named(&a.value_key)?,
            },
        })
    }

    fn reads_body(&self) -> bool {
        matches!(self, Source::Json(_) | Source::Form(_) | Source::JsonAttr { .. })
    }
}

/// Whether two sources' values are the same: equal, or equal once a Basic credential is form-decoded (OAuth
/// clients encode the client id they put in Basic auth, RFC 6749 §2.3.1, and send it plain in the body).
fn same_value(a: &str, a_src: &Source, b: &str, b_src: &Source) -> bool {
    let basic = |s: &Source| matches!(s, Source::Basic { .. });
    a == b
        || (basic(a_src) && percent_decode(a.as_bytes()) == b)
        || (basic(b_src) && percent_decode(b.as_bytes()) == a)
}

/// Whether the content type declares JSON: `application/json`, a `+json` type, Cognito's
/// `application/x-amz-json-1.1`.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(media) = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
    else {
        return false;
    };
    let ends = |suffix: &str| {
        media.len() >= suffix.len()
            && media.as_bytes()[media.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    ends("/json")
        || ends("+json")
        || media
            .as_bytes()
            .get(.."application/x-amz-json".len())
            .is_some_and(|p| p.eq_ignore_ascii_case(b"application/x-amz-json"))
}

/// Whether a form key names `name` as a list or an object (`name[]`, `name[0]`, `name[a]`).
fn bracketed(key: &str, name: &str) -> bool {
    key.strip_prefix(name).is_some_and(|rest| rest.starts_with('['))
}

/// The values of `name` in an urlencoded string split at `separators`, in order, decoded as
/// [`percent_decode`] decodes them.
fn urlencoded_values<'a>(
    raw: &'a [u8],
    name: &'a str,
    separators: &'a [u8],
) -> impl Iterator<Item = String> + 'a {
    raw.split(move |b| separators.contains(b))
        .filter_map(move |pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let plain = !k.iter().any(|&b| b == b'%' || b == b'+');
            let key_matches = if plain {
                k == name.as_bytes()
            } else {
                percent_decode(k) == name
            };
            key_matches.then(|| percent_decode(v))
        })
}

/// Decodes `+` and `%XX` as form parsers do: a `%` not followed by two hex digits stays as it is, and
/// bytes that are not UTF-8 become U+FFFD (PHP hands them to the application as they are: the value is
/// there, and must be checked and counted, not dropped).
fn percent_decode(s: &[u8]) -> String {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16)).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        i += 1;
        out.push(match b {
            b'+' => b' ',
            b'%' => match (hex(s.get(i)), hex(s.get(i + 1))) {
                (Some(hi), Some(lo)) => {
                    i += 2;
                    hi << 4 | lo
                }
                _ => b'%',
            },
            b => b,
        });
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn cookie_get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .find_map(|line| {
            line.split(';').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| unquote(v.trim()).to_owned())
            })
        })
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
}

/// The user and password of HTTP Basic credentials (padding optional).
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let v = std::str::from_utf8(headers.get(AUTHORIZATION)?.as_bytes()).ok()?;
    let (scheme, creds) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let text = String::from_utf8(B64.decode(creds.trim()).ok()?).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

// === impl Verdicts ===

/// The upstream's answer; the body's JSON is parsed at most once.
struct Response<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    body: Option<&'a [u8]>,
    json: OnceCell<Option<Value>>,
}

impl Verdicts {
    fn compile(o: &file::FileOutcome, base: &str) -> Result<Verdicts, ProfileError> {
        let rules = |rs: &OneOrMany<FileOutcomeRule>, key: &str| {
            let path = format!("{base}.{key}");
            (nonempty(rs, &path, "rule")?.iter().enumerate())
                .map(|(i, r)| Rule::compile(r, &rs.path(&path, i)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Verdicts {
            success: rules(&o.success, "success")?,
            challenge: o
                .challenge
                .as_ref()
                .map(|c| rules(c, "challenge"))
                .transpose()?
                .unwrap_or_default(),
            failure: o.failure.as_ref().map(|f| rules(f, "failure")).transpose()?,
        })
    }
}

impl Rule {
    fn compile(r: &FileOutcomeRule, base: &str) -> Result<Rule, ProfileError> {
        let status = match &r.status {
            Some(s) if s.is_empty() => {
                return Err(invalid(format!("{base}.status"), "list at least one status"));
            }
            s => (s.iter().flatten())
                .map(|s| match *s {
                    file::FileStatus::Code(c) => StatusMatch::Code(c),
                    file::FileStatus::Class(c) => StatusMatch::Class(u16::from(c)),
                })
                .collect(),
        };
        let json = match &r.json {
            None => Vec::new(),
            Some(js) => (nonempty(js, &format!("{base}.json"), "test")?.iter().enumerate())
                .map(|(i, j)| {
                    let path = js.path(&format!("{base}.json"), i);
                    Ok((
                        check_pointer(&j.pointer, &format!("{path}.pointer"))?,
                        test(&path, &j.equals, &j.prefix, &j.regex, j.present)?,
                    ))
                })
                .collect::<Result<_, ProfileError>>()?,
        };
        let headers = match &r.header {
            None => Vec::new(),
            Some(hs) => (nonempty(hs, &format!("{base}.header"), "test")?
                .iter()
                .enumerate())
            .map(|(i, h)| {
                let path = hs.path(&format!("{base}.header"), i);
                Ok((
                    header_name(&h.name, &path)?,
                    test(&path, &h.equals, &h.prefix, &h.regex, h.present)?,
                ))
            })
            .collect::<Result<_, ProfileError>>()?,
        };
        let path = format!("{base}.set_cookie");
        let set_cookie = match &r.set_cookie {
            None => None,
            Some(FileCookieName::Exact(n)) if n.is_empty() => {
                return Err(invalid(path, "the name must not be empty"));
            }
            Some(FileCookieName::Exact(n)) => Some(TextTest::Equals(n.clone())),
            Some(FileCookieName::Test(t)) => Some(test(&path, &t.equals, &t.prefix, &t.regex, None)?),
        };
        let redirect = (r.redirect.as_ref())
            .map(|t| opt_test(&format!("{base}.redirect"), &t.equals, &t.prefix, &t.regex, None))
            .transpose()?;
        let rule = Rule {
            status,
            json,
            headers,
            set_cookie,
            redirect,
        };
        let empty = rule.status.is_empty()
            && rule.json.is_empty()
            && rule.headers.is_empty()
            && rule.set_cookie.is_none()
            && rule.redirect.is_none();
        match empty {
            true => Err(invalid(
                base,
                "give at least one condition (status, json, header, set_cookie, redirect)",
            )),
            false => Ok(rule),
        }
    }

    /// Whether all conditions hold; `None` when they depend on a body that cannot be read.
    fn eval(&self, r: &Response) -> Option<bool> {
        let code = r.status.as_u16();
        let status_ok = self.status.is_empty()
            || self.status.iter().any(|s| match *s {
                StatusMatch::Code(c) => c == code,
                StatusMatch::Class(c) => c == code / 100,
            });
        let location = || {
            r.headers
                .get(LOCATION)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        };
        let redirect_ok = self.redirect.as_ref().is_none_or(|t| {
            r.status.is_redirection()
                && location().is_some_and(|l| t.as_ref().is_none_or(|t| t.matches(Some(l))))
        });
        let head_ok = status_ok
            && redirect_ok
            && self
                .headers
                .iter()
                .all(|(name, t)| t.matches_header(r.headers, name))
            && self.set_cookie.as_ref().is_none_or(|t| sets_cookie(r.headers, t));
        if !head_ok || self.json.is_empty() {
            return Some(head_ok);
        }
        let body = r.body?;
        let json = r.json.get_or_init(|| parse_json(body)).as_ref();
        Some(
            self.json
                .iter()
                .all(|(p, t)| t.matches_json(json.and_then(|j| pointer::get(j, p)))),
        )
    }
}

/// Whether any rule holds; `None` when none holds but some could not be decided.
fn any_holds(rules: &[Rule], resp: &Response) -> Option<bool> {
    let mut undecided = false;
    for rule in rules {
        match rule.eval(resp) {
            Some(true) => return Some(true),
            None => undecided = true,
            Some(false) => {}
        }
    }
    (!undecided).then_some(false)
}

/// Whether a `Set-Cookie` sets a cookie whose name passes `name`, with a value and no `Max-Age` <= 0.
fn sets_cookie(headers: &HeaderMap, name: &TextTest) -> bool {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
        .any(|line| {
            let mut parts = line.split(';');
            let Some((k, v)) = parts.next().and_then(|kv| kv.split_once('=')) else {
                return false;
            };
            let cleared = parts.filter_map(|a| a.split_once('=')).any(|(a, n)| {
                a.trim().eq_ignore_ascii_case("max-age") && n.trim().parse::<i64>().is_ok_and(|n| n <= 0)
            });
            name.matches(Some(k.trim())) && !unquote(v.trim()).is_empty() && !cleared
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http::HeaderValue;
    use serde::Deserialize;

    use super::file::FileProfile;
    use super::*;

    /// A rule file: the `profiles:` list that the main config includes.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ProfileFile {
        profiles: Vec<FileProfile>,
    }

    const SHIPPED: [(&str, &str); 4] = [
        ("json-login", include_str!("../../rules/profiles/json-login.yaml")),
        ("form-login", include_str!("../../rules/profiles/form-login.yaml")),
        (
            "oauth2-token",
            include_str!("../../rules/profiles/oauth2-token.yaml"),
        ),
        ("cognito", include_str!("../../rules/profiles/cognito.yaml")),
    ];

    fn compile(yaml: &str) -> Result<Profiles, ProfileError> {
        let file: ProfileFile = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        Profiles::compile(&file.profiles)
    }

    fn profiles(yaml: &str) -> Profiles {
        compile(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Runs a request through `candidates` and `resolve`, as the proxy does.
    fn run(ps: &Profiles, method: &str, uri: &str, hs: &[(&str, &str)], body: &[u8]) -> Option<Matched> {
        let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
        let h = headers(hs);
        ps.candidates(&method.parse().unwrap(), path, &h)?
            .resolve(query, &h, body)
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}"))
    }

    /// What `resolve` makes of a request to a profiled route.
    fn resolved(
        ps: &Profiles,
        uri: &str,
        hs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Option<Matched>, Unreadable> {
        let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
        let h = headers(hs);
        ps.candidates(&Method::POST, path, &h)
            .unwrap()
            .resolve(query, &h, body)
    }

    fn name(m: Option<Matched>) -> Option<String> {
        m.map(|m| m.profile.name().to_owned())
    }

    // === MFA style, challenge answer and enumeration declarations ===

    #[test]
    fn mfa_declarations_compile_and_classify() {
        let ps = profiles(
            r#"
profiles:
  - name: api
    operation: sign_in
    match: {path: {exact: /login}}
    challenge_response: {status: 401, body: '{"c":"{{challenge_id}}"}'}
    enumeration:
      unknown_user: {status: [400], json: {pointer: /code, equals: no_user}}
      wrong_password: [{status: [401]}, {status: [400], json: {pointer: /code, equals: bad_password}}]
  - name: native
    operation: sign_in
    mfa: backend
    match: {path: {exact: /native}}
"#,
        );
        let api = ps.get("api").unwrap();
        assert_eq!(api.mfa_style(), MfaStyle::Challenge);
        assert_eq!(api.challenge_response().unwrap().status, StatusCode::UNAUTHORIZED);
        assert!(api.outcome_needs_body(), "enumeration rules read the body");
        assert_eq!(ps.get("native").unwrap().mfa_style(), MfaStyle::Backend);
        let e = api.enumeration().unwrap();
        assert_eq!(e.answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(e.min_duration, std::time::Duration::from_millis(500));
        let h = HeaderMap::new();
        let c = |status: u16, body: &str| {
            e.classify(StatusCode::from_u16(status).unwrap(), &h, Some(body.as_bytes()))
        };
        assert_eq!(c(400, r#"{"code":"no_user"}"#), Some(Revealing::UnknownUser));
        assert_eq!(
            c(400, r#"{"code":"bad_password"}"#),
            Some(Revealing::WrongPassword)
        );
        assert_eq!(c(401, ""), Some(Revealing::WrongPassword));
        assert_eq!(c(400, r#"{"code":"locked"}"#), None);
        assert_eq!(c(200, r#"{"code":"no_user"}"#), None);

        let err = compile(
            "profiles:\n  - {name: f, operation: sign_in, mfa: page, match: {path: {exact: /l}}, challenge_response: {status: 401}}\n",
        )
        .unwrap_err();
        assert_eq!(err.path(), "profiles[0].challenge_response");
        for (extra, path) in [
            ("mfa: cognito, mfa_enrollment: known_device", "mfa_enrollment"),
            ("mfa: backend, mfa_enrollment: first_sign_in", "mfa_enrollment"),
            (
                "mfa_enrollment: known_device, challenge_response: {status: 401, body: '{{challenge_id}}'}",
                "challenge_response",
            ),
        ] {
            let yaml = format!(
                "profiles:\n  - {{name: f, operation: sign_in, match: {{path: {{exact: /l}}}}, {extra}}}\n"
            );
            assert_eq!(compile(&yaml).unwrap_err().path(), format!("profiles[0].{path}"));
        }
        let ok = compile(
            "profiles:\n  - {name: f, operation: sign_in, mfa: page, mfa_enrollment: first_sign_in, match: {path: {exact: /l}}}\n",
        )
        .unwrap();
        assert_eq!(ok.get("f").unwrap().mfa_enrollment(), MfaEnrollment::FirstSignIn);
        assert_eq!(ps.get("native").unwrap().mfa_enrollment(), MfaEnrollment::Off);
        for (enumeration, path) in [
            (
                "{unknown_user: {status: [404]}, wrong_password: []}",
                "wrong_password",
            ),
            (
                "{unknown_user: {status: [404]}, wrong_password: {status: [401]}, min_duration: 1m}",
                "min_duration",
            ),
        ] {
            let yaml = format!(
                "profiles:\n  - {{name: f, operation: sign_in, match: {{path: {{exact: /l}}}}, enumeration: {enumeration}}}\n"
            );
            let err = compile(&yaml).unwrap_err();
            assert_eq!(err.path(), format!("profiles[0].enumeration.{path}"));
        }
    }

    // === shipped profiles against their samples ===

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        request: String,
        response: Option<String>,
        expect: Expect,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Expect {
        profile: Option<String>,
        #[serde(default)]
        fields: ExpectFields,
        outcome: Option<Outcome>,
    }

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpectFields {
        username: Option<String>,
        password: Option<String>,
        phone: Option<String>,
        client_id: Option<String>,
    }

    /// A raw HTTP/1.1 message: start line, headers, body (see `rules/profiles/samples/README.md`).
    fn parse_http(raw: &str) -> (String, HeaderMap, String) {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").unwrap_or((raw.trim_end_matches('\n'), ""));
        let mut lines = head.lines();
        let start = lines.next().unwrap().to_owned();
        let pairs: Vec<(&str, &str)> = lines
            .map(|l| l.split_once(':').map(|(k, v)| (k.trim(), v.trim())).unwrap())
            .collect();
        (
            start,
            headers(&pairs),
            body.strip_suffix('\n').unwrap_or(body).to_owned(),
        )
    }

    fn check_sample(ps: &Profiles, sample: &Sample) -> Option<String> {
        let (start, h, body) = parse_http(&sample.request);
        let mut parts = start.split(' ');
        let (method, uri) = (parts.next().unwrap().parse().unwrap(), parts.next().unwrap());
        let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q)));
        let m = ps
            .candidates(&method, path, &h)
            .and_then(|c| c.resolve(query, &h, body.as_bytes()).unwrap());
        assert_eq!(
            m.as_ref().map(|m| m.profile.name()),
            sample.expect.profile.as_deref(),
            "profile"
        );
        let m = m?;
        let f = &m.fields;
        let got = ExpectFields {
            username: f.username.clone(),
            password: f.password.as_ref().map(|p| p.expose().to_owned()),
            phone: f.phone.clone(),
            client_id: f.client_id.clone(),
        };
        assert_eq!(got, sample.expect.fields, "fields");
        if let Some(resp) = &sample.response {
            let (start, h, body) = parse_http(resp);
            let status = StatusCode::from_bytes(start.split(' ').nth(1).unwrap().as_bytes()).unwrap();
            let body = m.profile.outcome_needs_body().then_some(body.as_bytes());
            assert_eq!(
                Some(m.profile.classify(status, &h, body)),
                sample.expect.outcome,
                "outcome"
            );
        }
        Some(m.profile.name().to_owned())
    }

    #[test]
    fn shipped_profiles_match_their_samples() {
        for (stem, yaml) in SHIPPED {
            let ps = profiles(yaml);
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules/profiles/samples")
                .join(stem);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            let mut seen = Vec::new();
            for path in &files {
                let text = std::fs::read_to_string(path).unwrap();
                let sample: Sample =
                    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let result = std::panic::catch_unwind(|| check_sample(&ps, &sample));
                let name = result.unwrap_or_else(|_| panic!("sample {} failed", path.display()));
                seen.extend(name);
            }
            for p in &ps.profiles {
                assert!(
                    seen.iter().any(|s| s == p.name()),
                    "{stem}: no sample for profile {}",
                    p.name()
                );
            }
            assert!(files.len() >= 5, "{stem}: only {} samples", files.len());
        }
    }

    #[test]
    fn shipped_profiles_are_distinct_together() {
        let all: Vec<FileProfile> = SHIPPED
            .iter()
            .flat_map(|(_, y)| serde_saphyr::from_str::<ProfileFile>(y).unwrap().profiles)
            .collect();
        let ps = Profiles::compile(&all).unwrap();
        let login = br#"{"username": "alice", "password": "pw"}"#;
        let ct = [("content-type", "application/json")];
        assert_eq!(
            name(run(&ps, "POST", "/api/login", &ct, login)).as_deref(),
            Some("json-login")
        );
        assert!(run(&ps, "GET", "/", &[], b"").is_none());
        assert!(run(&ps, "POST", "/", &[], b"").is_none(), "no X-Amz-Target");
    }

    // === sources ===

    const SOURCES: &str = r#"
profiles:
  - name: all
    operation: sign_in
    match: {path: {exact: /s}}
    fields:
      username: [{json: /user/name}, {form: user}, {query: user}, {header: X-User}, {cookie: user}, {basic_auth: user}]
      password: [{json: /pass}, {form: pass}, {basic_auth: password}]
      phone: {json_attr: {list: /attrs, name: phone, name_key: k, value_key: v}}
      client_id: [{json: /client}, {query: client_id}]
"#;

    fn fields(hs: &[(&str, &str)], uri: &str, body: &str) -> Fields {
        run(&profiles(SOURCES), "POST", uri, hs, body.as_bytes())
            .unwrap()
            .fields
    }

    #[test]
    fn each_source_kind_extracts() {
        let f = fields(
            &[],
            "/s",
            r#"{"user": {"name": "ann"}, "pass": "pw", "client": 42, "attrs": [{"k": "email", "v": "a@x"}, {"k": "phone", "v": "+15555550100"}]}"#,
        );
        assert_eq!(f.username.as_deref(), Some("ann"));
        assert_eq!(f.password.as_ref().map(Secret::expose), Some("pw"));
        assert_eq!(f.phone.as_deref(), Some("+15555550100"));
        assert_eq!(f.client_id.as_deref(), Some("42"), "numbers count as text");
        let f = fields(&[], "/s", "user=bob%20b&pass=p%2Bw+x");
        assert_eq!(
            (f.username.as_deref(), f.password.as_ref().map(Secret::expose)),
            (Some("bob b"), Some("p+w x"))
        );
        let f = fields(&[], "/s?client_id=web&user=q%C3%A9", "");
        assert_eq!(
            (f.username.as_deref(), f.client_id.as_deref()),
            (Some("qé"), Some("web"))
        );
        assert_eq!(
            fields(&[("x-user", "hdr")], "/s", "").username.as_deref(),
            Some("hdr")
        );
        let cookie = [("cookie", "a=1; user=\"cky\""), ("cookie", "b=2")];
        assert_eq!(fields(&cookie, "/s", "").username.as_deref(), Some("cky"));
        // "dXNlcjpwYXNzOndvcmQ" is "user:pass:word" without padding.
        let f = fields(&[("authorization", "basic dXNlcjpwYXNzOndvcmQ")], "/s", "");
        assert_eq!(
            (f.username.as_deref(), f.password.as_ref().map(Secret::expose)),
            (Some("user"), Some("pass:word"))
        );
    }

    #[test]
    fn first_non_empty_alternative_wins() {
        let f = fields(
            &[("x-user", "hdr")],
            "/s?user=",
            r#"{"user": {"name": ""}, "pass": null}"#,
        );
        assert_eq!(f.username.as_deref(), Some("hdr"));
        assert_eq!(f.password, None);
        let f = fields(&[], "/s", "user=first&user=second");
        assert_eq!(f.username.as_deref(), Some("first"));
    }

    #[test]
    fn non_scalars_are_ambiguous_and_bad_credentials_absent() {
        // A list or an object where text belongs is read as nothing, and refused (ambiguous): backends
        // hand it on (`{"phone": ["+881..."]}` reaches Twilio through Express).
        let m = run(
            &profiles(SOURCES),
            "POST",
            "/s",
            &[],
            br#"{"user": {"name": ["x"]}, "pass": {"a": 1}, "client": true}"#,
        )
        .unwrap();
        assert_eq!(
            (
                m.fields.username,
                m.fields.password,
                m.fields.client_id.as_deref(),
                m.ambiguous
            ),
            (None, None, Some("true"), true)
        );
        let plain = run(
            &profiles(SOURCES),
            "POST",
            "/s",
            &[],
            br#"{"client": 7, "pass": null}"#,
        )
        .unwrap();
        assert_eq!(
            (plain.fields.client_id.as_deref(), plain.ambiguous),
            (Some("7"), false)
        );
        // The same through a form or the query: `user[]=`, `user[0]=`, `user%5B%5D=`, `user[a]=`.
        for (uri, body) in [
            ("/s", "user[]=x"),
            ("/s", "pass=p&user[0]=x"),
            ("/s", "user%5B%5D=x"),
            ("/s?user[a]=x", ""),
        ] {
            let h = [("content-type", "application/x-www-form-urlencoded")];
            let m = run(&profiles(SOURCES), "POST", uri, &h, body.as_bytes()).unwrap();
            assert!(m.ambiguous, "{uri} {body}");
        }
        // A query that Rack splits at `;` as well: another value there is ambiguous; the same one is not.
        let q = |uri: &str| {
            let m = run(&profiles(SOURCES), "POST", uri, &[], b"").unwrap();
            (m.fields.username, m.ambiguous)
        };
        assert_eq!(q("/s?x=1;user=eve"), (Some("eve".into()), true));
        assert_eq!(q("/s?user=bob;x=1"), (Some("bob;x=1".into()), true));
        assert_eq!(q("/s?next=/a;b&user=bob"), (Some("bob".into()), false));
        for auth in ["Bearer dXNlcjpwYXNz", "Basic !!!", "Basic dXNlcg==", "Basic /w=="] {
            assert_eq!(
                fields(&[("authorization", auth)], "/s", ""),
                Fields::default(),
                "{auth}"
            );
        }
    }

    #[test]
    fn long_values_are_truncated_at_a_char_boundary() {
        let long = format!("a{}", "é".repeat(1000));
        let f = fields(&[], "/s", &format!(r#"{{"user": {{"name": "{long}"}}}}"#));
        let u = f.username.unwrap();
        assert_eq!(u.len(), MAX_FIELD_LEN - 1);
        assert!(long.starts_with(&u));
    }

    #[test]
    fn malformed_bodies_never_panic_and_are_refused_or_read_as_form_parsers_read_them() {
        // What looks like JSON (or is UTF-16 or UTF-32) and does not parse is refused: a backend may read it
        // (Python's json takes NaN, 1e400, lone surrogates and UTF-16; Go takes what follows the document).
        let deep = "[".repeat(100_000);
        let nested = format!("{}{}", "{\"a\":".repeat(129), "1".to_string() + &"}".repeat(129));
        let bodies: [&[u8]; 12] = [
            b"{\"user\": {\"name\": \"ann\"",
            b"\xff\xfe{\0\"\0p\0\"\0:\0\x31\0}\0",
            b"{\"pass\": \"\xff\"}",
            deep.as_bytes(),
            nested.as_bytes(),
            b"\0\0\0\x01binary",
            b"{\"pass\": \"p\", \"n\": NaN}",
            b"{\"pass\": \"p\", \"n\": 1e400}",
            b"{\"pass\": \"\\ud800\"}",
            b"{\"pass\": \"p\"} trailing",
            b"{\"pass\": \"p\",}",
            b"  [1, 2,]",
        ];
        for body in bodies {
            assert_eq!(
                resolved(&profiles(SOURCES), "/s", &[], body).map(|m| m.is_some()),
                Err(Unreadable::Json),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // The same with a form content type: a form parser would not read it, Flask's force=True would.
        let h = [("content-type", "application/x-www-form-urlencoded")];
        assert!(resolved(&profiles(SOURCES), "/s", &h, b"{\"n\": NaN}").is_err());
        // JSON nested 128 deep is read; an empty body or blanks are nothing to read.
        let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        for body in [ok.as_bytes(), b"", b"  \r\n"] {
            assert!(resolved(&profiles(SOURCES), "/s", &h, body).is_ok());
        }
        // Form values decode as PHP and Werkzeug decode them: a bad escape stays, bad UTF-8 is U+FFFD.
        for (body, user, pass) in [
            ("user=%&pass=%4&x=%zz%", "%", "%4"),
            ("user=%C3%28&pass=%FF", "\u{fffd}(", "\u{fffd}"),
            ("user=al%zzice&pass=%2", "al%zzice", "%2"),
        ] {
            let f = fields(&[], "/s", body);
            assert_eq!(
                (f.username.as_deref(), f.password.as_ref().map(Secret::expose)),
                (Some(user), Some(pass)),
                "{body}"
            );
        }
        assert_eq!(
            fields(&[], "/s?user=%E0%A4", "").username.as_deref(),
            Some("\u{fffd}")
        );
        let bom = "\u{feff}{\"pass\": \"p\"}";
        assert_eq!(
            fields(&[], "/s", bom)
                .password
                .map(|p| p.expose().to_owned())
                .as_deref(),
            Some("p")
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let f = fields(&[], "/s", r#"{"pass": "hunter2"}"#);
        let m = run(&profiles(SOURCES), "POST", "/s", &[], br#"{"pass": "hunter2"}"#).unwrap();
        for text in [
            format!("{f:?}"),
            format!("{f:#?}"),
            format!("{m:?}"),
            f.password.as_ref().unwrap().to_string(),
        ] {
            assert!(!text.contains("hunter2") && text.contains("[redacted]"), "{text}");
        }
    }

    // === request matching ===

    const MATCHERS: &str = r#"
profiles:
  - {name: exact, operation: sign_in, match: {methods: [post], path: {exact: /login/}}}
  - {name: prefix, operation: sign_up, match: {methods: [PUT], path: {prefix: /auth/}}}
  - {name: glob, operation: sms_send, match: {methods: [POST], path: {glob: "/tenants/*/sms"}}}
  - {name: regex, operation: other, match: {methods: [POST], path: {regex: "^/v[0-9]+/login$"}}}
  - name: list
    operation: sign_out
    match: {methods: [POST, DELETE], path: [{exact: /logout}, {prefix: /session/end}]}
  - {name: upper, operation: sign_in, match: {methods: [POST], path: {exact: /Account/LogOn}}}
"#;

    #[test]
    fn a_field_repeated_with_different_values_is_ambiguous() {
        let ps = profiles(
            "profiles:\n  - {name: f, operation: sign_in, match: {path: {exact: /login}}, fields: {username: [{form: \
             username}, {query: user}], password: [{form: password}]}}\n",
        );
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let multipart = [("content-type", "multipart/form-data; boundary=b")];
        let part = |name: &str, value: &str| {
            format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
        };
        // (URI, headers, body, the username read, ambiguous)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], String, Option<&'a str>, bool);
        let cases: [Case; 6] = [
            (
                "/login",
                &form,
                "username=alice&password=x".into(),
                Some("alice"),
                false,
            ),
            // The same value twice is no doubt.
            (
                "/login",
                &form,
                "username=alice&password=x&username=alice".into(),
                Some("alice"),
                false,
            ),
            // PHP and Django would take `victim`.
            (
                "/login",
                &form,
                "username=decoy&password=x&username=victim".into(),
                Some("decoy"),
                true,
            ),
            (
                "/login",
                &form,
                "username=a&password=x&password=y".into(),
                Some("a"),
                true,
            ),
            ("/login?user=a&user=b", &[], String::new(), Some("a"), true),
            (
                "/login",
                &multipart,
                format!(
                    "{}{}{}--b--\r\n",
                    part("username", "decoy"),
                    part("password", "x"),
                    part("username", "victim")
                ),
                Some("decoy"),
                true,
            ),
        ];
        for (uri, hs, body, user, ambiguous) in cases {
            let m = run(&ps, "POST", uri, hs, body.as_bytes()).unwrap();
            assert_eq!(
                (m.fields.username.as_deref(), m.ambiguous),
                (user, ambiguous),
                "{uri} {body}"
            );
        }
    }

    #[test]
    fn an_attribute_named_twice_with_different_values_is_ambiguous() {
        // (the attribute list, the phone read, ambiguous)
        let cases = [
            (
                r#"[{"k": "phone", "v": "+447400123456"}]"#,
                Some("+447400123456"),
                false,
            ),
            // A backend that builds a map of the list keeps the last entry.
            (
                r#"[{"k": "phone", "v": "+447400123456"}, {"k": "phone", "v": "+449098790000"}]"#,
                Some("+447400123456"),
                true,
            ),
            (
                r#"[{"k": "phone", "v": "+447400123456"}, {"k": "email", "v": "a@x"}, {"k": "phone", "v": "+447400123456"}]"#,
                Some("+447400123456"),
                false,
            ),
            (
                r#"[{"k": "phone", "v": null}, {"k": "phone", "v": "+449098790000"}]"#,
                None,
                true,
            ),
            (r#"[{"k": "phone", "v": ["+449098790000"]}]"#, None, true),
        ];
        for (attrs, phone, ambiguous) in cases {
            let body = format!(r#"{{"attrs": {attrs}}}"#);
            let m = run(&profiles(SOURCES), "POST", "/s", &[], body.as_bytes()).unwrap();
            assert_eq!(
                (m.fields.phone.as_deref(), m.ambiguous),
                (phone, ambiguous),
                "{attrs}"
            );
        }
    }

    #[test]
    fn sources_that_disagree_are_ambiguous_and_bad_multipart_is_unreadable() {
        let ps = profiles(
            "profiles:\n  - {name: j, operation: sign_in, match: {path: {exact: /login}}, fields: {username: [{json: \
             /username}, {form: username}, {query: username}], password: [{json: /password}, {form: password}]}}\n",
        );
        let json = [("content-type", "application/json")];
        let form = [("content-type", "application/x-www-form-urlencoded")];
        // (URI, headers, body, the username read, ambiguous)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, Option<&'a str>, bool);
        let cases: [Case; 10] = [
            // A JSON body is never read as a form, whatever its strings hold.
            (
                "/login",
                &json,
                r#"{"username": "bob", "password": "x", "next": "/welcome?step=2&username=eve"}"#,
                Some("bob"),
                false,
            ),
            (
                "/login",
                &json,
                r#"{"username": "alice", "password": "x"}"#,
                Some("alice"),
                false,
            ),
            // JSON inside a form: a form parser reads `carol`, a JSON one `newguy`.
            (
                "/login",
                &form,
                r#"{"username":"newguy","password":"x","z":"&username=carol&password=pw&"}"#,
                Some("newguy"),
                true,
            ),
            // The query and the body: passport-local reads the body first, Spring the query.
            (
                "/login?username=victim",
                &json,
                r#"{"username": "decoy", "password": "x"}"#,
                Some("decoy"),
                true,
            ),
            (
                "/login?username=alice",
                &json,
                r#"{"username": "alice", "password": "x"}"#,
                Some("alice"),
                false,
            ),
            (
                "/login?username=alice&password=pw",
                &json,
                "{}",
                Some("alice"),
                false,
            ),
            (
                "/login?username=alice",
                &form,
                "password=pw",
                Some("alice"),
                false,
            ),
            // Names that Go and ASP.NET bind ignoring case.
            (
                "/login",
                &json,
                r#"{"USERNAME": "victim", "password": "x"}"#,
                Some("victim"),
                false,
            ),
            (
                "/login",
                &json,
                r#"{"username": "decoy", "USERNAME": "victim", "password": "x"}"#,
                Some("decoy"),
                true,
            ),
            (
                "/login",
                &json,
                r#"{"username": "a", "password": "x", "Password": "y"}"#,
                Some("a"),
                true,
            ),
        ];
        for (uri, hs, body, user, ambiguous) in cases {
            let m = resolved(&ps, uri, hs, body.as_bytes()).unwrap().unwrap();
            assert_eq!(
                (m.fields.username.as_deref(), m.ambiguous),
                (user, ambiguous),
                "{uri} {body}"
            );
        }
        let part = "--b\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n--b--\r\n";
        for ct in [
            "multipart/form-data; boundary=a; boundary=b",
            "multipart/form-data",
        ] {
            let r = resolved(&ps, "/login", &[("content-type", ct)], part.as_bytes());
            assert_eq!(r.map(|m| m.is_some()), Err(Unreadable::Multipart), "{ct}");
        }
        // A body condition may read several places, as a field does (Spring reads `grant_type` in the query).
        let grant = profiles(
            "profiles:\n  - {name: g, operation: sign_in, match: {path: {exact: /token}, body: [{field: [{form: \
             grant_type}, {query: grant_type}], equals: password}]}, fields: {username: {form: username}}}\n",
        );
        let h = [("content-type", "application/x-www-form-urlencoded")];
        for (uri, body, matched, ambiguous) in [
            ("/token?grant_type=password", "username=a", true, false),
            ("/token", "grant_type=password&username=a", true, false),
            (
                "/token?grant_type=password",
                "grant_type=refresh_token&username=a",
                true,
                true,
            ),
            ("/token?grant_type=refresh_token", "username=a", false, false),
            (
                "/token?grant_type=refresh_token",
                "grant_type=password&username=a",
                true,
                true,
            ),
        ] {
            let m = resolved(&grant, uri, &h, body.as_bytes()).unwrap();
            assert_eq!(
                (m.is_some(), m.is_some_and(|m| m.ambiguous)),
                (matched, ambiguous),
                "{uri} {body}"
            );
        }
        // RFC 6749 §2.3.1: the client id in Basic auth is form-encoded, in the body it is plain.
        let oauth = profiles(
            "profiles:\n  - {name: t, operation: other, match: {path: {exact: /token}}, fields: {client_id: [{form: \
             client_id}, {basic_auth: user}]}}\n",
        );
        let basic = |user: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:s"))
            )
        };
        for (user, body, ambiguous) in [
            ("urn%3Aacme%3Aapp", "client_id=urn%3Aacme%3Aapp", false),
            ("app1", "client_id=app1", false),
            ("other", "client_id=app1", true),
        ] {
            let auth = basic(user);
            let h = [
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", auth.as_str()),
            ];
            let m = resolved(&oauth, "/token", &h, body.as_bytes()).unwrap().unwrap();
            assert_eq!(m.ambiguous, ambiguous, "{user}");
        }
        let r = resolved(
            &ps,
            "/login",
            &[("content-type", "multipart/form-data ; boundary=b")],
            part.as_bytes(),
        );
        assert_eq!(r.unwrap().unwrap().fields.username.as_deref(), Some("alice"));
        // A profile that reads no form is not refused for a form it does not read.
        let json_only = profiles(
            "profiles:\n  - {name: j, operation: sign_in, match: {path: {exact: /login}}, fields: {username: {json: \
             /username}}}\n",
        );
        let r = resolved(
            &json_only,
            "/login",
            &[("content-type", "multipart/form-data")],
            part.as_bytes(),
        );
        assert!(matches!(r, Ok(Some(_))));
    }

    #[test]
    fn path_matchers() {
        let ps = profiles(MATCHERS);
        let cases = [
            ("POST", "/login", Some("exact")),
            ("POST", "/login/", Some("exact")),
            ("POST", "/login/x", None),
            // Spellings that backends route to the same handler: case (Express, ASP.NET), `;parameters`
            // (Tomcat, Jetty).
            ("POST", "/Login", Some("exact")),
            ("POST", "/LOGIN;jsessionid=abc/", Some("exact")),
            ("POST", "/login;x/y", None),
            // Tomcat drops `;parameters` before it resolves dot segments: `..;` is `..` there.
            ("POST", "/login/..;/login", Some("exact")),
            ("POST", "/x/..;a=b/Login;c", Some("exact")),
            ("POST", "/x/;y/../login", Some("exact")),
            ("POST", "/login/..;/x", None),
            // Werkzeug upper-cases the method.
            ("post", "/login", Some("exact")),
            ("Post", "/V2/Login", Some("regex")),
            // A format suffix (Rails: `/login.json` is `/login` answering JSON).
            ("POST", "/login.json", Some("exact")),
            ("POST", "/Login.XML;a=b", Some("exact")),
            ("POST", "/login.html", None),
            ("POST", "/login/.json", None),
            ("POST", "/V2/Login.json", Some("regex")),
            ("POST", "/account/logon", Some("upper")),
            ("POST", "/ACCOUNT/LogOn;a=b", Some("upper")),
            ("PUT", "/Auth/X", Some("prefix")),
            ("POST", "/Tenants/ACME/sms", Some("glob")),
            ("POST", "/V2/Login", Some("regex")),
            ("PUT", "/auth/x/y", Some("prefix")),
            ("PUT", "/auth", None),
            ("POST", "/tenants/acme/sms", Some("glob")),
            ("POST", "/tenants/a/b/sms", None),
            ("POST", "/v2/login", Some("regex")),
            ("POST", "/v2/login/x", None),
            ("DELETE", "/logout", Some("list")),
            ("POST", "/session/end/now", Some("list")),
            ("GET", "/login", None),
            ("PUT", "/login", None),
            ("POST", "/elsewhere", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                name(run(&ps, method, path, &[], b"")).as_deref(),
                want,
                "{method} {path}"
            );
        }
        assert!(ps.candidates(&Method::GET, "/login", &HeaderMap::new()).is_none());
        assert!(!ps.is_empty() && Profiles::default().is_empty());
    }

    #[test]
    fn matched_requests_carry_the_operation_and_profile_labels() {
        let ps = profiles(
            "profiles:\n  - {name: login-json, operation: password_reset, match: {path: {exact: /login}}}\n",
        );
        let m = ps
            .candidates(&Method::POST, "/login", &HeaderMap::new())
            .unwrap()
            .resolve(None, &HeaderMap::new(), b"")
            .unwrap()
            .unwrap();
        assert_eq!(
            m.labels(),
            ["authward:operation:password_reset", "authward:profile:login-json"].map(String::from)
        );
        assert!(m.labels().iter().all(|l| is_builtin_label(l)));
    }

    #[test]
    fn candidates_keep_config_order_and_combine_limits() {
        let ps = profiles(
            r#"
profiles:
  - {name: a, operation: other, match: {path: {prefix: /x}}, body_limit: 8KiB}
  - name: b
    operation: sign_in
    match: {path: {exact: /x/login}, body: [{field: {form: kind}, equals: pw}]}
    body_limit: 2KiB
  - {name: c, operation: other, match: {path: {glob: "/x/*"}}}
  - {name: d, operation: other, match: {path: [{exact: /x/login}, {exact: /x/login2}, {regex: "^/x/"}]}}
"#,
        );
        let c = ps
            .candidates(&Method::GET, "/x/login", &HeaderMap::new())
            .unwrap();
        let names: Vec<_> = c.profiles().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(c.body_limit(), Some(2048));
        assert!(c.needs_body());
        let c = ps
            .candidates(&Method::GET, "/x/other", &HeaderMap::new())
            .unwrap();
        assert_eq!((c.body_limit(), c.needs_body()), (Some(8192), false));
        assert_eq!(ps.get("d").map(|p| p.operation()), Some(Operation::Other));
    }

    #[test]
    fn header_conditions() {
        let ps = profiles(
            r#"
profiles:
  - name: h
    operation: sign_in
    match:
      path: {exact: /}
      headers:
        - {name: X-Amz-Target, equals: Svc.InitiateAuth}
        - {name: content-type, prefix: application/}
        - {name: User-Agent, regex: "(?i)^aws-sdk"}
        - {name: X-Internal, present: false}
        - {name: Authorization, present: true}
"#,
        );
        let ok = [
            ("x-amz-target", "Svc.Other"),
            ("X-AMZ-TARGET", "Svc.InitiateAuth"),
            ("content-type", "application/x-amz-json-1.1"),
            ("user-agent", "AWS-SDK-JS/3"),
            ("authorization", ""),
        ];
        assert_eq!(
            name(run(&ps, "POST", "/", &ok, b"")).as_deref(),
            Some("h"),
            "any value of a header may match"
        );
        for drop in 1..ok.len() {
            let hs: Vec<_> = ok
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, h)| *h)
                .collect();
            assert!(
                run(&ps, "POST", "/", &hs, b"").is_none(),
                "without {:?}",
                ok[drop]
            );
        }
        let with_internal = [&ok[..], &[("x-internal", "1")]].concat();
        assert!(run(&ps, "POST", "/", &with_internal, b"").is_none());
    }

    #[test]
    fn body_conditions_pick_the_first_candidate_that_holds() {
        let ps = profiles(
            r#"
profiles:
  - name: password-grant
    operation: sign_in
    match: {path: {exact: /token}, body: [{field: {form: grant_type}, equals: password}]}
  - name: json-flag
    operation: sign_up
    match:
      path: {exact: /token}
      body:
        - {field: {json: /new}, equals: true}
        - {field: {json: /n}, equals: 7}
        - {field: {query: debug}, present: false}
  - name: fallback
    operation: other
    match: {path: {prefix: /tok}, body: [{field: {json: /kind}, regex: "^a+$"}, {field: {json: /x}, prefix: ab}]}
"#,
        );
        let go = |uri: &str, body: &str| name(run(&ps, "POST", uri, &[], body.as_bytes()));
        assert_eq!(
            go("/token", "grant_type=password&username=a").as_deref(),
            Some("password-grant")
        );
        assert_eq!(
            go("/token", r#"{"new": true, "n": 7}"#).as_deref(),
            Some("json-flag")
        );
        assert_eq!(
            go(
                "/token?debug=1",
                r#"{"new": true, "n": 7, "kind": "aa", "x": "abc"}"#
            )
            .as_deref(),
            Some("fallback")
        );
        assert_eq!(go("/token", "grant_type=refresh_token"), None);
        assert_eq!(go("/token", "not json"), None);
    }

    // === outcome ===

    const OUTCOMES: &str = r#"
profiles:
  - name: o
    operation: sign_in
    match: {path: {exact: /o}}
    outcome:
      success:
        - {status: ["2xx"], json: [{pointer: /token, exists: true}, {pointer: /user/active, equals: true}]}
        - {redirect: {prefix: /home}, set_cookie: sid}
        - {status: [204], header: {name: X-Login, equals: ok}}
      challenge: {status: [200], json: {pointer: /mfa, present: true}}
      failure: [{status: [401, "403"]}, {status: [200], json: {pointer: /error, regex: "^bad"}}]
  - name: plain
    operation: sign_up
    match: {path: {exact: /p}}
    outcome:
      success: {status: [201]}
  - {name: none, operation: sign_out, match: {path: {exact: /n}}}
"#;

    fn classify(profile: &str, status: u16, hs: &[(&str, &str)], body: Option<&str>) -> Outcome {
        let ps = profiles(OUTCOMES);
        let p = ps.get(profile).unwrap();
        p.classify(
            StatusCode::from_u16(status).unwrap(),
            &headers(hs),
            body.map(str::as_bytes),
        )
    }

    /// Status, response headers, body, expected outcome.
    type Case = (
        u16,
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
        Outcome,
    );

    #[test]
    fn outcome_rules() {
        use Outcome::*;
        let cases: [Case; 14] = [
            (
                200,
                &[],
                Some(r#"{"token": "t", "user": {"active": true}}"#),
                Success,
            ),
            (
                200,
                &[],
                Some(r#"{"token": "t", "user": {"active": false}}"#),
                Unknown,
            ),
            (
                200,
                &[],
                Some(r#"{"token": "", "user": {"active": true}}"#),
                Unknown,
            ),
            (
                200,
                &[],
                Some(r#"{"token": "t", "mfa": {"type": "totp"}}"#),
                Challenge,
            ),
            (200, &[], Some(r#"{"error": "bad password", "mfa": 1}"#), Failure),
            (403, &[], None, Failure),
            (
                302,
                &[("location", "/home/x"), ("set-cookie", "sid=abc; Path=/")],
                None,
                Success,
            ),
            (
                302,
                &[("location", "/home"), ("set-cookie", "sid=; Path=/")],
                None,
                Unknown,
            ),
            (
                302,
                &[("location", "/home"), ("set-cookie", "sid=x; Max-Age=0")],
                None,
                Unknown,
            ),
            (
                302,
                &[("location", "/other"), ("set-cookie", "sid=x")],
                None,
                Unknown,
            ),
            (
                200,
                &[("location", "/home"), ("set-cookie", "sid=x")],
                Some("{}"),
                Unknown,
            ),
            (204, &[("x-login", "ok")], None, Success),
            (200, &[], None, Unknown),
            (
                200,
                &[("content-encoding", "gzip")],
                Some(r#"{"token": "t", "user": {"active": true}}"#),
                Unknown,
            ),
        ];
        for (status, hs, body, want) in cases {
            assert_eq!(classify("o", status, hs, body), want, "{status} {hs:?} {body:?}");
        }
        assert_eq!(classify("o", 200, &[], Some("not json")), Unknown);
    }

    #[test]
    fn default_failure_and_missing_outcome() {
        assert_eq!(classify("plain", 201, &[], None), Outcome::Success);
        assert_eq!(classify("plain", 200, &[], None), Outcome::Failure);
        assert_eq!(classify("plain", 429, &[], None), Outcome::Failure);
        assert_eq!(classify("plain", 503, &[], None), Outcome::Unknown);
        assert_eq!(classify("none", 200, &[], None), Outcome::Unknown);
        let ps = profiles(OUTCOMES);
        let needs: Vec<_> = ["o", "plain", "none"]
            .map(|n| ps.get(n).unwrap().outcome_needs_body())
            .into();
        assert_eq!(needs, [true, false, false]);
    }

    // === names, types and errors ===

    #[test]
    fn operation_and_outcome_names() {
        let ops: Vec<Operation> = serde_saphyr::from_str(
            "[sign_in, sign_up, password_change, password_reset, sms_send, sms_verify, mfa_verify, sign_out, other]",
        )
        .unwrap();
        for op in ops {
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
        }
        for o in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Challenge,
            Outcome::Unknown,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), o.as_str());
        }
    }

    fn error(yaml_profile: &str) -> String {
        let yaml = format!(
            "profiles:\n  - {{name: ok, operation: other, match: {{path: {{exact: /ok}}}}}}\n{yaml_profile}"
        );
        compile(&yaml).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn compile_errors_name_the_field() {
        let cases = [
            (
                "  - {name: p, operation: sign_in, match: {path: {exact: /}}, fields: {username: {json: username}}}",
                r#"profiles[1].fields.username: invalid JSON pointer "username" (must start with /)"#,
            ),
            (
                "  - {name: p, operation: sign_in, match: {path: {exact: /}}, fields: {phone: [{form: p}, {json: /a~2}]}}",
                r#"profiles[1].fields.phone[1]: invalid JSON pointer "/a~2" (~ must be followed by 0 or 1)"#,
            ),
            (
                "  - {name: ok, operation: sign_in, match: {path: {exact: /}}}",
                r#"profiles[1].name: duplicate profile name "ok" (first used by profiles[0])"#,
            ),
            (
                "  - {name: Bad Name, operation: other, match: {path: {exact: /}}}",
                "profiles[1].name: invalid profile name",
            ),
            (
                "  - {name: p, operation: other, match: {methods: [], path: {exact: /}}}",
                "profiles[1].match.methods: list",
            ),
            (
                "  - {name: p, operation: other, match: {methods: [GET, \"B D\"], path: {exact: /}}}",
                "profiles[1].match.methods[1]",
            ),
            (
                "  - {name: p, operation: other, match: {path: [{exact: /}, {prefix: x}]}}",
                "profiles[1].match.path[1]: path \"x\"",
            ),
            (
                "  - {name: p, operation: other, match: {path: {glob: \"/a/***\"}}}",
                "profiles[1].match.path: invalid glob",
            ),
            (
                "  - {name: p, operation: other, match: {path: []}}",
                "profiles[1].match.path: list at least one path",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}, headers: [{name: \"a b\", present: true}]}}",
                "profiles[1].match.headers[0]: invalid header name",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}, headers: [{name: a, equals: x, prefix: y}]}}",
                "profiles[1].match.headers[0]: give only one",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}, body: [{field: {form: a}}]}}",
                "profiles[1].match.body[0]: give one of",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}, body: [{field: {json_attr: {list: a, name: n}}, present: true}]}}",
                "profiles[1].match.body[0].field.list: invalid JSON pointer",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}}, body_limit: 0}",
                "profiles[1].body_limit",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}}, outcome: {success: {}}}",
                "profiles[1].outcome.success: give at least one",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}}, outcome: {success: {status: []}}}",
                "profiles[1].outcome.success.status",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}}, outcome: {success: {status: [200]}, failure: [{json: {pointer: x, present: true}}]}}",
                "profiles[1].outcome.failure[0].json.pointer: invalid JSON pointer",
            ),
            (
                "  - {name: p, operation: other, match: {path: {exact: /}}, outcome: {success: {set_cookie: {}}}}",
                "profiles[1].outcome.success.set_cookie: give one of",
            ),
        ];
        let yaml = "profiles:\n  - {name: a, operation: other, match: {path: {exact: /}}}\n  - {name: b, operation: other, match: {path: {prefix: x}}}";
        assert_eq!(compile(yaml).map(|_| ()).unwrap_err().index(), 1);
        for (yaml, want) in cases {
            let got = error(yaml);
            assert!(got.starts_with(want), "{yaml}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn yaml_errors_carry_positions() {
        let bad = [
            (
                "profiles:\n  - name: p\n    operation: log_in\n    match: {path: {exact: /}}\n",
                "log_in",
            ),
            (
                "profiles:\n  - name: p\n    operation: other\n    match: {path: {exact: /}, verb: GET}\n",
                "verb",
            ),
            (
                "profiles:\n  - name: p\n    operation: other\n    match: {path: {exact: /}}\n    outcome: {success: {status: [700]}}\n",
                "700",
            ),
            (
                "profiles:\n  - name: p\n    operation: other\n    match: {path: {regex: \"(\"}}\n",
                "regular expression",
            ),
            (
                "profiles:\n  - name: p\n    operation: other\n    match: {path: {exact: /}}\n    fields: {username: {xml: /a}}\n",
                "xml",
            ),
        ];
        for (yaml, word) in bad {
            let e = serde_saphyr::from_str::<ProfileFile>(yaml)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(word) && e.contains("line"), "{e}");
        }
    }

    #[test]
    fn json_schema_generates() {
        let schema = serde_json::to_string(&schemars::schema_for!(FileProfile)).unwrap();
        for word in [
            "basic_auth",
            "json_attr",
            "set_cookie",
            "OneOrMany_FileSource",
            "FileStatus",
        ] {
            assert!(schema.contains(word), "{word} missing");
        }
    }
}
