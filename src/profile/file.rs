//! Serde mirror types of a route profile as written in YAML (`profiles:` entries); see `Profiles::compile`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer};

use super::Operation;
use crate::config::types::{ByteSize, Duration, Pattern};

/// One route profile: which requests it takes, what it extracts and how it reads the answer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileProfile {
    /// Unique name, `[a-z0-9_-]+`.
    pub name: String,
    /// The operation the matched requests perform.
    pub operation: Operation,
    /// Which requests this profile takes.
    #[serde(rename = "match")]
    pub matcher: FileMatch,
    /// Cap on the buffered request body for this route (the proxy's default otherwise).
    pub body_limit: Option<ByteSize>,
    /// Where the username, password, phone and client id come from.
    #[serde(default)]
    pub fields: FileFields,
    /// How to tell success, failure and challenge apart in the upstream's answer.
    pub outcome: Option<FileOutcome>,
    /// This route is one step of a multi-step sign-in (custom authentication, MFA challenges).
    pub flow: Option<FileFlow>,
    /// What a client gets when authward refuses this operation (risk block); a JSON 403 when omitted.
    pub block_response: Option<FileResponse>,
    /// Whether the operation sends or verifies an SMS code, how to read its numbers, and the answer
    /// for `fake_success` (see the `sms` section).
    pub sms: Option<crate::sms::file::FileProfileSms>,
    /// How a sign-in this profile takes is stepped up when the risk decision asks for MFA and the `mfa`
    /// section is set: `challenge` (the default) holds the upstream's answer and sends
    /// `challenge_response`; `page` holds it and redirects to the built-in MFA page (HTML form logins);
    /// `cognito` holds it and answers with a Cognito `SOFTWARE_TOKEN_MFA` challenge, and on a
    /// `RespondToAuthChallenge` route takes the answers to those challenges; `backend` holds nothing and
    /// forwards `x-authward-decision` to a backend that steps up by itself (an OIDC server with
    /// `acr_values`).
    #[serde(default)]
    pub mfa: MfaStyle,
    /// Self-enrollment of a TOTP factor (styles `challenge` and `page`): `off` (the default) leaves
    /// enrollment to the admin API; otherwise a sign-in of a user with no factor that the risk engine
    /// lets through as it is (decision `allow` at level `none`, in enforce mode) is held until the user
    /// proves a new authenticator, when the place it comes from qualifies: `known_device` (the sign-in's
    /// device had signed in as the user before) or `first_sign_in` (the user has no history yet).
    #[serde(default)]
    pub mfa_enrollment: MfaEnrollment,
    /// The answer that stands in for a held sign-in (styles `challenge` and `cognito`): status, headers
    /// and a body where `{{challenge_id}}`, `{{methods}}` (a JSON list such as `["totp"]`) and
    /// `{{expires_in}}` (seconds) are filled in. A JSON 401 (`challenge`) or Cognito's challenge answer
    /// (`cognito`) when omitted. With `mfa_enrollment`, it also stands in for a held enrollment and must
    /// show `{{secret}}` (base32) and `{{otpauth_uri}}`, which are empty in a step-up.
    pub challenge_response: Option<FileResponse>,
    /// No user enumeration (Cognito's PreventUserExistenceErrors): how the upstream answers an unknown
    /// user and a wrong password. authward sends one identical answer for both, no sooner than
    /// `min_duration` after the request arrived, so neither the answer nor its timing tells them apart.
    pub enumeration: Option<FileEnumeration>,
}

/// How a profile's sign-ins are stepped up to MFA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaStyle {
    /// Hold the answer; send `challenge_response` (APIs).
    #[default]
    Challenge,
    /// Hold the answer; redirect to the built-in MFA page under `/.authward/mfa/` (HTML forms).
    Page,
    /// Hold the answer; answer as Cognito does (`SOFTWARE_TOKEN_MFA`, the challenge id as `Session`).
    Cognito,
    /// Hold nothing: the backend steps up itself, told by `x-authward-decision`.
    Backend,
}

/// When a user with no factor is asked to enroll one while signing in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MfaEnrollment {
    /// Never: factors are enrolled through the admin API only.
    #[default]
    Off,
    /// When the sign-in comes from a device that had already signed in as the user (the device cookie
    /// or fingerprint is in the user's history), so a password alone, from a new device, never binds an
    /// authenticator. The safe choice.
    KnownDevice,
    /// When the user has no sign-in history at all: the account's very first sign-in binds the
    /// authenticator (onboarding). Whoever signs in first with the password enrolls, so use it only where
    /// the account's owner signs in right after creating it.
    FirstSignIn,
}

/// The upstream's answers that would tell whether an account exists, and the one answer sent instead.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileEnumeration {
    /// The upstream's answer for a username it does not know (any of the rules).
    pub unknown_user: OneOrMany<FileOutcomeRule>,
    /// The upstream's answer for a known user with a wrong password (any of the rules).
    pub wrong_password: OneOrMany<FileOutcomeRule>,
    /// The one answer sent for both; a JSON 401 `invalid_credentials` when omitted.
    pub answer: Option<FileResponse>,
    /// Both answers leave no sooner than this after the request arrived; set it above the upstream's
    /// slowest wrong-password answer (password hashing takes time, an unknown user often none).
    #[serde(default = "default_min_duration")]
    pub min_duration: Duration,
}

fn default_min_duration() -> Duration {
    Duration::from_millis(500)
}

/// A step of a multi-step sign-in: the flow is followed by its session value, scored once, and acted on
/// at the step whose answer is a success.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileFlow {
    /// `start`: the first step (it has the username and password); `continue`: a later step, found by
    /// the session value in `fields.session`.
    pub step: FlowStep,
    /// The flow is a custom authentication flow (its mode is `risk.custom_auth_mode`).
    #[serde(default)]
    pub custom: bool,
    /// JSON pointer to the session value in a challenge answer (`/Session`).
    pub response_session: Option<String>,
    /// JSON pointer to the next challenge's name in a challenge answer (`/ChallengeName`).
    pub response_challenge: Option<String>,
}

/// The role of a step in a multi-step flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlowStep {
    /// The step that starts a flow.
    Start,
    /// A step that continues a flow (answers a challenge); the one answered with success completes it.
    Continue,
}

/// A fixed answer: status, headers and body.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileResponse {
    pub status: u16,
    /// Header names and values.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// The body, as sent.
    #[serde(default)]
    pub body: String,
}

/// Request conditions; all must hold.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileMatch {
    /// Allowed methods (any when omitted).
    pub methods: Option<Vec<String>>,
    /// The path, or a list of alternatives.
    pub path: OneOrMany<FilePath>,
    /// Header conditions, checked on the request head.
    #[serde(default)]
    pub headers: Vec<FileHeaderTest>,
    /// Conditions on extracted fields (body, query, ...), checked once the body is read.
    #[serde(default)]
    pub body: Vec<FileFieldTest>,
}

/// A path matcher (the path without the query string). Exact paths, prefixes and globs ignore ASCII case,
/// `;parameters` in segments and a last segment's `.json` or `.xml` format suffix, as many backends route
/// them (`/API/Login;jsessionid=1` and `/api/login.json` are `/api/login`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FilePath {
    /// The exact path; a single trailing `/` on the request is ignored.
    Exact(String),
    /// Any path that starts with this text.
    Prefix(String),
    /// A glob: `*` within one segment, `**` across segments (`/**/token`).
    Glob(String),
    /// A regular expression searched in the path as sent and in its lower-case form without
    /// `;parameters` (anchor it with `^...$`).
    Regex(Pattern),
}

/// A test on a header value (any of its values may satisfy it); exactly one of the tests.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileHeaderTest {
    /// Header name, case-insensitive.
    pub name: String,
    /// The value equals this text (numbers and booleans compare as text).
    pub equals: Option<FileScalar>,
    /// The value starts with this text.
    pub prefix: Option<String>,
    /// The regular expression matches somewhere in the value.
    pub regex: Option<Pattern>,
    /// `true`: the header is sent; `false`: it is not.
    pub present: Option<bool>,
}

/// A test on an extracted value; exactly one of the tests.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileFieldTest {
    /// Where the value comes from, or a list of places read as a field's are: the first that holds a
    /// value, and a request whose places hold different values is ambiguous (400).
    pub field: OneOrMany<FileSource>,
    /// The value equals this text (numbers and booleans compare as text).
    pub equals: Option<FileScalar>,
    /// The value starts with this text.
    pub prefix: Option<String>,
    /// The regular expression matches somewhere in the value.
    pub regex: Option<Pattern>,
    /// `true`: the value is there and not empty; `false`: it is not.
    pub present: Option<bool>,
}

/// Where a value comes from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileSource {
    /// A JSON pointer into the body (`/user/name`); strings, numbers and booleans count as text.
    Json(String),
    /// A field of an urlencoded body, or a text part of a multipart/form-data one.
    Form(String),
    /// A query parameter.
    Query(String),
    /// A request header.
    Header(String),
    /// A request cookie.
    Cookie(String),
    /// A part of HTTP Basic credentials in `Authorization`.
    BasicAuth(FileBasicPart),
    /// The value of a `{Name, Value}` entry in a JSON list (Cognito's `UserAttributes`).
    JsonAttr(FileJsonAttr),
}

/// A part of HTTP Basic credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileBasicPart {
    /// The user name before the first `:`.
    User,
    /// The password after the first `:`.
    Password,
}

/// A lookup in a JSON list of name/value objects.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileJsonAttr {
    /// JSON pointer to the list.
    pub list: String,
    /// The entry's name.
    pub name: String,
    /// Key holding the entry's name (default `Name`).
    #[serde(default = "name_key")]
    pub name_key: String,
    /// Key holding the entry's value (default `Value`).
    #[serde(default = "value_key")]
    pub value_key: String,
}

fn name_key() -> String {
    "Name".into()
}
fn value_key() -> String {
    "Value".into()
}

/// The extracted fields; each is one source or a list of alternatives (the first non-empty wins).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileFields {
    /// The account name.
    pub username: Option<OneOrMany<FileSource>>,
    /// The password presented, or the new one for sign-up and password changes.
    pub password: Option<OneOrMany<FileSource>>,
    /// The phone number an SMS goes to.
    pub phone: Option<OneOrMany<FileSource>>,
    /// The app client's id.
    pub client_id: Option<OneOrMany<FileSource>>,
    /// A multi-step flow's session value (a `continue` step's request).
    pub session: Option<OneOrMany<FileSource>>,
    /// The name of the challenge a `continue` step answers.
    pub challenge_name: Option<OneOrMany<FileSource>>,
}

/// The verdicts: each is a rule or a list of rules (any rule may hold; within a rule all conditions must).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileOutcome {
    /// The operation succeeded.
    pub success: OneOrMany<FileOutcomeRule>,
    /// The operation continues with a challenge (MFA, custom auth).
    pub challenge: Option<OneOrMany<FileOutcomeRule>>,
    /// When omitted, an answer that is neither success nor challenge with a status below 500 is a failure.
    pub failure: Option<OneOrMany<FileOutcomeRule>>,
}

/// Conditions on the upstream's answer; all listed must hold.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileOutcomeRule {
    /// Status codes (`200`) or classes (`"2xx"`).
    pub status: Option<Vec<FileStatus>>,
    /// Tests on the JSON body.
    pub json: Option<OneOrMany<FileJsonTest>>,
    /// Tests on response headers.
    pub header: Option<OneOrMany<FileHeaderTest>>,
    /// A `Set-Cookie` that sets (not clears) a cookie with this name.
    pub set_cookie: Option<FileCookieName>,
    /// A 3xx answer whose `Location` passes the test (any `Location` when the test is empty).
    pub redirect: Option<FileTextTest>,
}

/// A test on a value of the JSON body; exactly one of the tests. A `null` counts as absent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileJsonTest {
    /// JSON pointer (`/token`).
    pub pointer: String,
    /// The value equals this text (numbers and booleans compare as text).
    pub equals: Option<FileScalar>,
    /// The value starts with this text.
    pub prefix: Option<String>,
    /// The regular expression matches somewhere in the value.
    pub regex: Option<Pattern>,
    /// `true`: the value is there and not null; `false`: it is not.
    #[serde(alias = "exists")]
    pub present: Option<bool>,
}

/// A text test; at most one of the tests.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileTextTest {
    /// The value equals this text (numbers and booleans compare as text).
    pub equals: Option<FileScalar>,
    /// The value starts with this text.
    pub prefix: Option<String>,
    /// The regular expression matches somewhere in the value.
    pub regex: Option<Pattern>,
}

/// A cookie name: the exact name as a string, or a text test on the name.
#[derive(Debug, Clone)]
pub enum FileCookieName {
    /// This exact name.
    Exact(String),
    /// A name that passes the test.
    Test(FileTextTest),
}

/// A status code (`302`) or class (`"4xx"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// One status code.
    Code(u16),
    /// A class by its first digit (`4` for `4xx`).
    Class(u8),
}

/// A YAML scalar (string, number or boolean) read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileScalar(pub String);

/// One value or a list of values.
#[derive(Debug, Clone)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list of values.
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The values, in order.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
    /// The field path of the `i`th value (`base` for a single value, `base[i]` in a list).
    pub fn path(&self, base: &str, i: usize) -> String {
        match self {
            OneOrMany::One(_) => base.to_owned(),
            OneOrMany::Many(_) => format!("{base}[{i}]"),
        }
    }
}

// === Deserialize (visitors keep serde-saphyr's positions, unlike untagged enums) ===

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping or a list of mappings")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(OneOrMany::Many(v))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de> Deserialize<'de> for FileCookieName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileCookieName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a cookie name or a test such as {regex: \"^sess\"}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(FileCookieName::Exact(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                FileTextTest::deserialize(MapAccessDeserializer::new(map)).map(FileCookieName::Test)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FileStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileStatus;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code from 100 to 599 or a class such as \"2xx\"")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                match u16::try_from(n) {
                    Ok(c @ 100..=599) => Ok(FileStatus::Code(c)),
                    _ => Err(E::custom(format!("status code {n} is not between 100 and 599"))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                self.visit_u64(u64::try_from(n).unwrap_or(0))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match s.as_bytes() {
                    [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(FileStatus::Class(c - b'0')),
                    _ => match s.parse::<u64>() {
                        Ok(n) => self.visit_u64(n),
                        Err(_) => Err(E::custom(format!(
                            "expected a status code or class such as 200 or \"2xx\", found `{s}`"
                        ))),
                    },
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FileScalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FileScalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(FileScalar(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(FileScalar(b.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                Ok(FileScalar(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                Ok(FileScalar(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Ok(FileScalar(
                    serde_json::Number::from_f64(n).map_or_else(|| n.to_string(), |n| n.to_string()),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

// === JsonSchema for the hand-written Deserialize impls ===

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("OneOrMany_{}", T::schema_name()).into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let one = g.subschema_for::<T>();
        json_schema!({ "anyOf": [one, { "type": "array", "items": one }] })
    }
}

impl JsonSchema for FileCookieName {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("FileCookieName")
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let test = g.subschema_for::<FileTextTest>();
        json_schema!({ "anyOf": [{ "type": "string", "description": "The exact cookie name." }, test] })
    }
}

impl JsonSchema for FileStatus {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("FileStatus")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "anyOf": [
            { "type": "integer", "minimum": 100, "maximum": 599 },
            { "type": "string", "pattern": "^([1-5][xX][xX]|[1-5][0-9][0-9])$" }
        ], "description": "A status code (200) or class (\"2xx\")." })
    }
}

impl JsonSchema for FileScalar {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("FileScalar")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": ["string", "number", "boolean"], "description": "A value compared as text." })
    }
}
