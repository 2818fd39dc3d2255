//! Fields to match: the parts of a request a statement inspects, each parsed and transformed once per request.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::OnceLock;

use http::{HeaderMap, Method, Uri};

use super::file::{FileField, InvalidJson, Oversize, Part};
use super::transform::{Transform, apply_chain};
use crate::profile::pointer::{self, Tokens};
use crate::profile::{BodyLocation, Fields};

/// Most values one field yields (headers, cookies, arguments, JSON members); the rest are not inspected.
pub const MAX_VALUES: usize = 512;
/// Deepest JSON nesting walked.
const MAX_JSON_DEPTH: usize = 32;

/// A compiled field: what to read, resolved at load.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Method,
    UriPath,
    QueryString,
    SingleQueryArg(String),
    AllQueryArgs,
    SingleHeader(http::HeaderName),
    Headers {
        part: Part,
        include: Vec<String>,
        exclude: Vec<String>,
    },
    Cookies {
        part: Part,
        include: Vec<String>,
        exclude: Vec<String>,
    },
    Body,
    JsonBody {
        pointer: Option<String>,
        part: Part,
        invalid: InvalidJson,
    },
    Form(String),
    AllFormFields,
    Ja4,
    HeaderOrder,
    Username,
    Phone,
    ClientId,
    Password,
}

impl Field {
    /// Compiles a YAML field; returns it with its oversize policy (bodies only).
    pub fn compile(f: &FileField) -> Result<(Field, Oversize), String> {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
        Ok(match f {
            FileField::Method => (Field::Method, Oversize::Continue),
            FileField::UriPath => (Field::UriPath, Oversize::Continue),
            FileField::QueryString => (Field::QueryString, Oversize::Continue),
            FileField::SingleQueryArg(n) => {
                (Field::SingleQueryArg(n.to_ascii_lowercase()), Oversize::Continue)
            }
            FileField::AllQueryArgs => (Field::AllQueryArgs, Oversize::Continue),
            FileField::SingleHeader(n) => (
                Field::SingleHeader(
                    http::HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| format!("`{n}` is not a header name"))?,
                ),
                Oversize::Continue,
            ),
            FileField::Headers(p) => {
                if !p.include.is_empty() && !p.exclude.is_empty() {
                    return Err("headers: give `include` or `exclude`, not both".into());
                }
                (
                    Field::Headers {
                        part: p.part,
                        include: lower(&p.include),
                        exclude: lower(&p.exclude),
                    },
                    Oversize::Continue,
                )
            }
            FileField::Cookies(p) => {
                if !p.include.is_empty() && !p.exclude.is_empty() {
                    return Err("cookies: give `include` or `exclude`, not both".into());
                }
                (
                    Field::Cookies {
                        part: p.part,
                        include: p.include.clone(),
                        exclude: p.exclude.clone(),
                    },
                    Oversize::Continue,
                )
            }
            FileField::Body(b) => (Field::Body, b.oversize),
            FileField::JsonBody(j) => {
                if let Some(p) = &j.pointer {
                    if !p.is_empty() && !p.starts_with('/') {
                        return Err(format!(
                            "json_body: invalid JSON pointer `{p}` (must start with /)"
                        ));
                    }
                }
                (
                    Field::JsonBody {
                        pointer: j.pointer.clone(),
                        part: j.part,
                        invalid: j.invalid,
                    },
                    j.oversize,
                )
            }
            FileField::Form(n) => (Field::Form(n.clone()), Oversize::Continue),
            FileField::AllFormFields => (Field::AllFormFields, Oversize::Continue),
            FileField::Ja4 => (Field::Ja4, Oversize::Continue),
            FileField::HeaderOrder => (Field::HeaderOrder, Oversize::Continue),
            FileField::Username => (Field::Username, Oversize::Continue),
            FileField::Phone => (Field::Phone, Oversize::Continue),
            FileField::ClientId => (Field::ClientId, Oversize::Continue),
            FileField::Password => (Field::Password, Oversize::Continue),
        })
    }

    /// Whether reading this field needs the request body.
    pub fn needs_body(&self) -> bool {
        matches!(
            self,
            Field::Body | Field::JsonBody { .. } | Field::Form(_) | Field::AllFormFields
        )
    }

    /// A short name for explanations.
    pub fn describe(&self) -> String {
        match self {
            Field::SingleQueryArg(n) => format!("single_query_arg({n})"),
            Field::SingleHeader(n) => format!("single_header({n})"),
            Field::Headers { part, .. } => format!("headers({part:?})").to_lowercase(),
            Field::Cookies { part, .. } => format!("cookies({part:?})").to_lowercase(),
            Field::JsonBody { pointer: None, .. } => "json_body".to_string(),
            Field::JsonBody { pointer: Some(p), .. } => format!("json_body({p})"),
            Field::Form(n) => format!("form({n})"),
            other => format!("{other:?}").chars().fold(String::new(), |mut s, c| {
                if c.is_uppercase() && !s.is_empty() {
                    s.push('_');
                }
                s.push(c.to_ascii_lowercase());
                s
            }),
        }
    }
}

/// For each input, the first input with the same field and password hiding: the one whose slot holds
/// the field's untransformed values, shared by every transformation chain over it.
pub fn read_as(inputs: &[Input]) -> Vec<usize> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            inputs[..i]
                .iter()
                .position(|o| o.field == input.field && o.hide_password == input.hide_password)
                .unwrap_or(i)
        })
        .collect()
}

/// A field with its transformations: one slot in the per-request cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Input {
    pub field: Field,
    pub transforms: Vec<Transform>,
    /// Leave the profile's password out of aggregate fields (body, JSON, form).
    pub hide_password: bool,
}

/// The request as the web ACL reads it.
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The body, or its first `listen.body_limit` bytes when it is larger than what authward reads.
    pub body: Option<&'a [u8]>,
    pub body_oversize: bool,
    /// The length of the whole body when it is over the limit and known (its `Content-Length`).
    pub body_len: Option<u64>,
    pub profile: Option<&'a Fields>,
    /// The body as JSON, when the profile stage parsed it (a byte order mark skipped).
    pub json: Option<&'a serde_json::Value>,
    pub ja4: Option<&'a str>,
}

/// The values of one input for one request, borrowed from the request where no transformation changed
/// them.
#[derive(Debug, Default)]
pub struct Values<'a> {
    pub items: Items<'a>,
    /// The field's source was cut off (body larger than the cap).
    pub oversize: bool,
    /// The body was not valid JSON and the policy says match / no match.
    pub invalid_json: Option<bool>,
    /// Bytes of the body past the part read, when its whole length is known: a `size_constraint` on
    /// `body` counts them (untransformed).
    pub unread: u64,
}

/// The request body as JSON: the profile stage's document, or parsed here at most once per request. It
/// lives beside the [`Cache`], not in it, so that the cache's values can borrow the document's strings
/// (a `OnceLock`: the cache is held across the store's awaits, so what it borrows must be `Sync`).
pub struct BodyJson<'a> {
    profiled: Option<&'a serde_json::Value>,
    parsed: OnceLock<Option<serde_json::Value>>,
}

impl<'a> BodyJson<'a> {
    pub fn new(view: &RequestView<'a>) -> Self {
        // The web ACL reads a body with a byte order mark as invalid JSON; the profile skips the mark.
        let same_document = view.body.is_some_and(|b| !b.starts_with(b"\xEF\xBB\xBF"));
        BodyJson {
            profiled: view.json.filter(|_| same_document),
            parsed: OnceLock::new(),
        }
    }
}

/// The values of a field: most fields yield one, held inline (no allocation); a slice to read.
#[derive(Debug, Clone)]
pub enum Items<'a> {
    One(Cow<'a, [u8]>),
    Many(Vec<Cow<'a, [u8]>>),
}

impl Default for Items<'_> {
    fn default() -> Self {
        Items::Many(Vec::new())
    }
}

impl<'a> Items<'a> {
    /// Adds a value (the second one moves both to the heap).
    pub fn push(&mut self, value: Cow<'a, [u8]>) {
        match self {
            Items::Many(items) if !items.is_empty() => items.push(value),
            Items::Many(_) => *self = Items::One(value),
            Items::One(_) => {
                if let Items::One(first) = std::mem::take(self) {
                    *self = Items::Many(vec![first, value]);
                }
            }
        }
    }

    /// Keeps the first `len` values.
    pub fn truncate(&mut self, len: usize) {
        match self {
            Items::Many(items) => items.truncate(len),
            Items::One(_) if len == 0 => *self = Items::default(),
            Items::One(_) => {}
        }
    }
}

impl<'a> std::ops::Deref for Items<'a> {
    type Target = [Cow<'a, [u8]>];

    fn deref(&self) -> &Self::Target {
        match self {
            Items::One(value) => std::slice::from_ref(value),
            Items::Many(items) => items,
        }
    }
}

impl<'a> FromIterator<Cow<'a, [u8]>> for Items<'a> {
    fn from_iter<I: IntoIterator<Item = Cow<'a, [u8]>>>(iter: I) -> Self {
        let mut items = Items::default();
        for value in iter {
            items.push(value);
        }
        items
    }
}

/// Per-request cache: each input is read and transformed at most once.
pub struct Cache<'a> {
    view: &'a RequestView<'a>,
    json: &'a BodyJson<'a>,
    /// Per input, the slot that holds its field's values before transformation (see [`read_as`]).
    read_as: &'a [usize],
    slots: Vec<Slot<'a>>,
    /// Whether the body is read as a form, see [`Cache::is_form`].
    is_form: OnceCell<bool>,
    /// A `multipart/form-data` body's text fields, parsed once for every form field that reads them.
    multipart: OnceCell<Option<Vec<(String, String)>>>,
}

/// One input's values and injection verdicts.
#[derive(Default)]
struct Slot<'a> {
    /// The field's values before transformation, for every input that [`read_as`] this slot.
    raw: OnceCell<Values<'a>>,
    /// Injection verdicts on `raw`: the index of the first value flagged, per (detector, sensitivity);
    /// rule sets test the same field many times.
    raw_detections: Detections,
    /// The input's values when its transformations changed some; `None` when they changed none (the
    /// field's values are the input's, and so are their injection verdicts).
    values: OnceCell<Option<Values<'a>>>,
    /// Injection verdicts on `values`, when it holds some.
    detections: Detections,
}

/// Injection verdicts per (detector, sensitivity), see [`Cache::detection`].
type Detections = [OnceCell<Option<usize>>; 4];

impl<'a> Cache<'a> {
    /// A cache for the inputs of one ACL, given their [`read_as`] table.
    pub fn new(view: &'a RequestView<'a>, json: &'a BodyJson<'a>, read_as: &'a [usize]) -> Self {
        Cache {
            view,
            json,
            read_as,
            slots: (0..read_as.len()).map(|_| Slot::default()).collect(),
            is_form: OnceCell::new(),
            multipart: OnceCell::new(),
        }
    }

    /// The injection verdict `key` (detector and sensitivity) on a slot's values (read first), computed
    /// once for every input with the same values.
    pub fn detection(
        &self,
        slot: usize,
        key: usize,
        compute: impl FnOnce() -> Option<usize>,
    ) -> &Option<usize> {
        let own = &self.slots[slot];
        let cells = if own.values.get().is_some_and(Option::is_some) {
            &own.detections
        } else {
            &self.slots[self.read_as[slot]].raw_detections
        };
        cells[key].get_or_init(compute)
    }

    pub fn view(&self) -> &RequestView<'a> {
        self.view
    }

    /// The transformed values of input `slot`: its field is read once for every input that reads it.
    pub fn values(&self, slot: usize, input: &Input) -> &Values<'a> {
        let raw = self.slots[self.read_as[slot]]
            .raw
            .get_or_init(|| self.read(input));
        if input.transforms.is_empty() {
            return raw;
        }
        let values = self.slots[slot].values.get_or_init(|| {
            // Built from the first value the transformations change.
            let mut items: Option<Items<'a>> = None;
            for (i, item) in raw.items.iter().enumerate() {
                let changed = match apply_chain(&input.transforms, item) {
                    Cow::Owned(t) => Some(t),
                    // A trim gives a shorter borrowed slice: that is a change too.
                    Cow::Borrowed(b) if b.len() != item.len() => Some(b.to_vec()),
                    Cow::Borrowed(_) => None,
                };
                match (&mut items, changed) {
                    (Some(items), changed) => items.push(changed.map_or_else(|| item.clone(), Cow::Owned)),
                    (None, Some(t)) => {
                        let mut all: Items<'a> = raw.items[..i].iter().cloned().collect();
                        all.push(Cow::Owned(t));
                        items = Some(all);
                    }
                    (None, None) => {}
                }
            }
            items.map(|items| Values {
                items,
                oversize: raw.oversize,
                invalid_json: raw.invalid_json,
                unread: raw.unread,
            })
        });
        values.as_ref().unwrap_or(raw)
    }

    fn json(&self) -> Option<&'a serde_json::Value> {
        let json: &'a BodyJson<'a> = self.json;
        let oversize = self.view.body_oversize;
        json.profiled.or_else(|| {
            json.parsed
                .get_or_init(|| {
                    self.view.body.and_then(|b| {
                        serde_json::from_slice(b)
                            .ok()
                            .or_else(|| oversize.then(|| parse_truncated(b)).flatten())
                    })
                })
                .as_ref()
        })
    }

    /// Where the profile found the password in the body.
    fn password_at(&self) -> Option<&'a BodyLocation> {
        self.view.profile.and_then(|f| f.password_at.as_ref())
    }

    fn read(&self, input: &Input) -> Values<'a> {
        let v: &'a RequestView<'a> = self.view;
        let one = |s: Cow<'a, [u8]>| Values {
            items: Items::One(s),
            ..Default::default()
        };
        let profile_field = |get: fn(&Fields) -> Option<&str>| Values {
            items: v
                .profile
                .and_then(get)
                .map(|s| Items::One(Cow::Borrowed(s.as_bytes())))
                .unwrap_or_default(),
            ..Default::default()
        };
        // The password is left out of aggregate fields by where the profile found it, never by value.
        let hidden = if input.hide_password {
            self.password_at()
        } else {
            None
        };
        match &input.field {
            Field::Method => one(Cow::Borrowed(v.method.as_str().as_bytes())),
            Field::UriPath => one(Cow::Borrowed(v.uri.path().as_bytes())),
            Field::QueryString => one(Cow::Borrowed(v.uri.query().unwrap_or("").as_bytes())),
            Field::SingleQueryArg(name) => Values {
                items: query_pairs(v.uri.query())
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, val)| Cow::Borrowed(val.as_bytes()))
                    .take(MAX_VALUES)
                    .collect(),
                ..Default::default()
            },
            Field::AllQueryArgs => Values {
                items: query_pairs(v.uri.query())
                    .map(|(_, val)| Cow::Borrowed(val.as_bytes()))
                    .take(MAX_VALUES)
                    .collect(),
                ..Default::default()
            },
            Field::SingleHeader(name) => Values {
                items: v
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|h| Cow::Borrowed(h.as_bytes()))
                    .take(MAX_VALUES)
                    .collect(),
                ..Default::default()
            },
            Field::Headers {
                part,
                include,
                exclude,
            } => {
                let mut items = Items::default();
                for (name, value) in v.headers.iter() {
                    if !selected(name.as_str(), include, exclude, true) {
                        continue;
                    }
                    push_part(&mut items, *part, name.as_str().as_bytes(), value.as_bytes());
                }
                items.truncate(MAX_VALUES);
                Values {
                    items,
                    ..Default::default()
                }
            }
            Field::Cookies {
                part,
                include,
                exclude,
            } => {
                let mut items = Items::default();
                for header in v.headers.get_all(http::header::COOKIE) {
                    let Ok(text) = std::str::from_utf8(header.as_bytes()) else {
                        continue;
                    };
                    for pair in text.split(';') {
                        let (k, val) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
                        if selected(k, include, exclude, false) {
                            push_part(&mut items, *part, k.as_bytes(), val.as_bytes());
                        }
                    }
                }
                items.truncate(MAX_VALUES);
                Values {
                    items,
                    ..Default::default()
                }
            }
            Field::Body => {
                let body: &'a [u8] = v.body.unwrap_or_default();
                let unread = match v.body_len {
                    Some(len) if v.body_oversize => len.saturating_sub(body.len() as u64),
                    _ => 0,
                };
                Values {
                    items: Items::One(hide_in_body(body, hidden, v.headers, self.secrets(input))),
                    oversize: v.body_oversize,
                    invalid_json: None,
                    unread,
                }
            }
            // No body, nothing to parse (a GET is not invalid JSON).
            Field::JsonBody { .. } if v.body.is_none_or(<[u8]>::is_empty) => Values::default(),
            Field::Form(_) | Field::AllFormFields if !self.is_form() => Values::default(),
            Field::JsonBody {
                pointer,
                part,
                invalid,
            } => {
                let Some(doc) = self.json() else {
                    return match invalid {
                        InvalidJson::EvaluateAsString => {
                            let raw: &'a [u8] = v.body.unwrap_or_default();
                            Values {
                                items: Items::One(hide_in_body(raw, hidden, v.headers, self.secrets(input))),
                                oversize: v.body_oversize,
                                invalid_json: None,
                                unread: 0,
                            }
                        }
                        // The oversize flag goes along: for a body over the limit, the statement's
                        // oversize policy decides before the invalid-JSON one.
                        InvalidJson::Match => Values {
                            invalid_json: Some(true),
                            oversize: v.body_oversize,
                            ..Default::default()
                        },
                        InvalidJson::NoMatch => Values {
                            invalid_json: Some(false),
                            oversize: v.body_oversize,
                            ..Default::default()
                        },
                    };
                };
                // A rule that points at the password member itself has named it.
                let hidden = match hidden {
                    Some(BodyLocation::Json(p)) if pointer.as_deref() != Some(&**p) => Some(&**p),
                    _ => None,
                };
                let mut items = Items::default();
                if let Some((target, hide)) = json_target(doc, pointer.as_deref().unwrap_or(""), hidden) {
                    collect_json(target, *part, hide, self.secrets(input), &mut items, 0);
                }
                Values {
                    items,
                    oversize: v.body_oversize,
                    invalid_json: None,
                    unread: 0,
                }
            }
            Field::Form(name) => Values {
                items: self
                    .form_fields()
                    .filter(|(k, _)| k == name)
                    .map(|(_, val)| str_bytes(val))
                    .take(MAX_VALUES)
                    .collect(),
                oversize: v.body_oversize,
                invalid_json: None,
                unread: 0,
            },
            Field::AllFormFields => Values {
                items: self
                    .form_fields()
                    .filter(|(k, _)| !matches!(hidden, Some(BodyLocation::Form(n)) if **n == **k))
                    .filter(|(k, _)| !(self.secrets(input).0 && names_a_secret(k)))
                    .map(|(_, val)| str_bytes(val))
                    .take(MAX_VALUES)
                    .collect(),
                oversize: v.body_oversize,
                invalid_json: None,
                unread: 0,
            },
            Field::Ja4 => one(Cow::Borrowed(v.ja4.unwrap_or("").as_bytes())),
            Field::HeaderOrder => {
                let mut order = String::new();
                for name in v.headers.keys() {
                    if !order.is_empty() {
                        order.push(':');
                    }
                    order.push_str(name.as_str());
                }
                one(Cow::Owned(order.into_bytes()))
            }
            Field::Username => profile_field(|f| f.username.as_deref()),
            Field::Phone => profile_field(|f| f.phone.as_deref()),
            Field::ClientId => profile_field(|f| f.client_id.as_deref()),
            Field::Password => profile_field(|f| f.password.as_ref().map(|p| p.expose())),
        }
    }
}

fn selected(name: &str, include: &[String], exclude: &[String], lowercase: bool) -> bool {
    let name: Cow<str> = if lowercase {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    if !include.is_empty() {
        return include.iter().any(|i| *i == name);
    }
    !exclude.iter().any(|e| *e == name)
}

fn push_part<'a>(items: &mut Items<'a>, part: Part, key: &'a [u8], value: &'a [u8]) {
    if matches!(part, Part::Keys | Part::All) {
        items.push(Cow::Borrowed(key));
    }
    if matches!(part, Part::Values | Part::All) {
        items.push(Cow::Borrowed(value));
    }
}

/// A text's bytes, borrowed or owned as the text was.
fn str_bytes(s: Cow<'_, str>) -> Cow<'_, [u8]> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// Raw `name=value` pairs of a query string (values not decoded: add `url_decode` to inspect decoded).
pub fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Decoded pairs of an urlencoded body.
fn form_pairs(body: Option<&[u8]>) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(body.unwrap_or_default())
}

impl<'a> Cache<'a> {
    /// The form fields of the body: a `multipart/form-data` body's text parts (parsed once), else the
    /// urlencoded pairs.
    fn form_fields(&self) -> impl Iterator<Item = (Cow<'a, str>, Cow<'a, str>)> + '_ {
        let v = self.view;
        let multipart = self.multipart.get_or_init(|| {
            crate::form::boundary(v.headers).map(|b| crate::form::fields(v.body.unwrap_or_default(), &b))
        });
        let urlencoded = if multipart.is_some() { None } else { v.body };
        form_pairs(urlencoded).chain(
            multipart
                .iter()
                .flatten()
                .map(|(k, val)| (Cow::Owned(k.clone()), Cow::Owned(val.clone()))),
        )
    }

    /// Whether the body is read as a form: a content type that names a form
    /// (`application/x-www-form-urlencoded`, `multipart/form-data`), or none and a body that does not look
    /// like JSON. A JSON body is never read as a form. (`json_body` reads any body as JSON, whatever its
    /// content type, as AWS WAF does: a client must not hide a payload by its label.)
    /// Whether aggregate fields leave out members named as secrets: as the profile's password, on
    /// profiled routes only.
    fn secrets(&self, input: &Input) -> Secrets {
        Secrets(input.hide_password && self.view.profile.is_some())
    }

    fn is_form(&self) -> bool {
        *self.is_form.get_or_init(|| {
            const MULTIPART: &[u8] = b"multipart/form-data";
            let ct = self
                .view
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes());
            let starts =
                |ct: &[u8], with: &[u8]| ct.get(..with.len()).is_some_and(|p| p.eq_ignore_ascii_case(with));
            match ct {
                Some(ct) => starts(ct, URLENCODED) || starts(ct, MULTIPART),
                None => {
                    let first = self
                        .view
                        .body
                        .and_then(|b| b.iter().find(|c| !c.is_ascii_whitespace()).copied());
                    !matches!(first, Some(b'{' | b'['))
                }
            }
        })
    }
}

/// The content type of an urlencoded form.
const URLENCODED: &[u8] = b"application/x-www-form-urlencoded";

/// The raw body without the password's value, found by where the profile read it: the form field's pairs
/// (or its `multipart/form-data` part) are dropped, the JSON member's string value is emptied; with
/// `secrets`, an urlencoded form's pairs named as secrets ([`names_a_secret`]) are dropped too. Other
/// bodies are returned as they are.
fn hide_in_body<'a>(
    body: &'a [u8],
    at: Option<&BodyLocation>,
    headers: &HeaderMap,
    secrets: Secrets,
) -> Cow<'a, [u8]> {
    let urlencoded = || {
        headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.as_bytes().get(..URLENCODED.len()))
            .is_some_and(|p| p.eq_ignore_ascii_case(URLENCODED))
    };
    let without_pairs = |name: Option<&str>| {
        let kept: Vec<&[u8]> = body
            .split(|b| *b == b'&')
            .filter(|pair| {
                let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
                !form_urlencoded::parse(key)
                    .any(|(k, _)| Some(&*k) == name || (secrets.0 && names_a_secret(&k)))
            })
            .collect();
        kept.join(&b'&')
    };
    Cow::Owned(match at {
        None if secrets.0 && urlencoded() => without_pairs(None),
        None => return Cow::Borrowed(body),
        Some(BodyLocation::Form(name)) => match crate::form::boundary(headers) {
            Some(boundary) => crate::form::without_field(body, &boundary, name),
            None => without_pairs(Some(name)),
        },
        Some(BodyLocation::Json(pointer)) => {
            let key = pointer
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .replace("~1", "/")
                .replace("~0", "~");
            let quoted = serde_json::to_string(&key).unwrap_or_default();
            empty_json_string_after(body, quoted.as_bytes())
        }
    })
}

/// Empties every JSON string value that follows the member name `quoted_key` (`"password"`).
fn empty_json_string_after(body: &[u8], quoted_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if !body[i..].starts_with(quoted_key) {
            out.push(body[i]);
            i += 1;
            continue;
        }
        let mut j = i + quoted_key.len();
        while body.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if body.get(j) != Some(&b':') {
            out.extend_from_slice(&body[i..j]);
            i = j;
            continue;
        }
        j += 1;
        while body.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        if body.get(j) != Some(&b'"') {
            out.extend_from_slice(&body[i..j]);
            i = j;
            continue;
        }
        // Skip the string value, escapes included, and keep an empty string in its place.
        let mut k = j + 1;
        while k < body.len() && body[k] != b'"' {
            k += if body[k] == b'\\' { 2 } else { 1 };
        }
        out.extend_from_slice(&body[i..=j]);
        out.push(b'"');
        i = (k + 1).min(body.len());
    }
    out
}

/// The JSON document that the first part of a body over the limit begins, as far as it was read: a string
/// cut off is closed where it stops (a broken escape or character at the cut dropped), and so are the
/// arrays and objects open there; when that does not parse (the cut fell in a key, a number or a literal),
/// the members before the last complete one's end are kept. `None` when the part read is not valid JSON
/// up to there: the body is invalid JSON, not merely cut off.
fn parse_truncated(prefix: &[u8]) -> Option<serde_json::Value> {
    // A character cut in two at the end is dropped.
    let prefix = match std::str::from_utf8(prefix) {
        Err(e) if e.error_len().is_none() => &prefix[..e.valid_up_to()],
        _ => prefix,
    };
    // The closers still due, whether the text ends in a string (and in an escape there), and the last
    // place a member or element ended (before a `,`, or just inside a `{` or `[`). `None` when brackets
    // do not pair up or something follows the document: no cut can make that valid.
    let scan = |text: &[u8]| {
        let (mut open, mut in_string, mut escaped, mut safe_cut) = (Vec::new(), false, false, None);
        for (i, &b) in text.iter().enumerate() {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            if open.is_empty() && safe_cut.is_some() && !b.is_ascii_whitespace() {
                return None;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    open.push(if b == b'{' { b'}' } else { b']' });
                    safe_cut = Some(i + 1);
                }
                // Pops the closer due; a different one (or none due) is a mismatch.
                b'}' | b']' if open.pop() != Some(b) => return None,
                b',' => safe_cut = Some(i),
                _ => {}
            }
        }
        Some((open, in_string, escaped, safe_cut))
    };
    let closed = |text: &[u8], open: &[u8], close_string: bool| {
        let mut doc = text.to_vec();
        if close_string {
            doc.push(b'"');
        }
        doc.extend(open.iter().rev());
        serde_json::from_slice::<serde_json::Value>(&doc).ok()
    };
    let (open, in_string, escaped, safe_cut) = scan(prefix)?;
    let text = if escaped {
        &prefix[..prefix.len() - 1]
    } else {
        prefix
    };
    closed(text, &open, in_string).or_else(|| {
        let cut = &prefix[..safe_cut?];
        let (open, ..) = scan(cut)?;
        closed(cut, &open, false)
    })
}

/// The value `pointer` selects for a rule, as if the member at `hidden` (the password, when given) were
/// `null`: the target, and the hidden member's tokens below it when it lies inside the target.
fn json_target<'v, 'p>(
    doc: &'v serde_json::Value,
    pointer: &str,
    hidden: Option<&'p str>,
) -> Option<(&'v serde_json::Value, Option<Tokens<'p>>)> {
    let target = pointer::get(doc, pointer)?;
    let Some(mut below) = hidden.and_then(pointer::tokens) else {
        return Some((target, None));
    };
    for token in pointer::tokens(pointer)? {
        match below.next() {
            Some(h) if h == token => {}
            // The paths part: the hidden member is not in the target.
            Some(_) => return Some((target, None)),
            // The target lies in the hidden member, and it exists: all `null`.
            None => return None,
        }
    }
    // The target is the hidden member itself: `null`.
    below.clone().next()?;
    Some((target, Some(below)))
}

/// Whether aggregate fields leave out the values of members named as secrets ([`names_a_secret`]).
#[derive(Debug, Clone, Copy)]
struct Secrets(bool);

/// Whether a body member's name names a password or a secret, whatever its case and punctuation:
/// `password`, `passwd`, `pwd`, `pass`, `passphrase`, anything ending in one of them or in `secret`
/// (`NEW_PASSWORD`, `PreviousPassword`, `ProposedPassword`, `TemporaryPassword`, `current-password`,
/// `client_secret`), and a password's repeats (`password1`, `password2`, `password_confirmation`,
/// `passwordConfirm`). The profile declares one password, but a change, a reset or a sign-up carries
/// others (Cognito's `ChangePassword`, Django's `password1`/`password2`): strong passwords matched
/// injection patterns there (1.75 % of random ones as `PreviousPassword`). Allocation-free: names of more
/// than 48 letters and digits name nothing.
fn names_a_secret(name: &str) -> bool {
    let mut buf = [0u8; 48];
    let mut n = 0;
    for b in name.bytes().filter(u8::is_ascii_alphanumeric) {
        if n == buf.len() {
            return false;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    let name = &buf[..n];
    const ENDINGS: [&[u8]; 4] = [b"password", b"passwd", b"pwd", b"secret"];
    const REPEATS: [&[u8]; 6] = [
        b"confirmation",
        b"confirm",
        b"again",
        b"repeat",
        b"verify",
        b"check",
    ];
    if matches!(name, b"pass" | b"passphrase") || ENDINGS.iter().any(|e| name.ends_with(e)) {
        return true;
    }
    name.strip_prefix(b"password".as_slice())
        .is_some_and(|rest| rest.iter().all(u8::is_ascii_digit) || REPEATS.contains(&rest))
}

/// Collects the keys and/or values of a JSON value, skipping the member `hide` names below it (when it
/// names one: no tokens left means the value itself is hidden, which [`json_target`] handles), and with
/// `secrets`, the values of members named as secrets.
fn collect_json<'v>(
    v: &'v serde_json::Value,
    part: Part,
    hide: Option<Tokens<'_>>,
    secrets: Secrets,
    out: &mut Items<'v>,
    depth: usize,
) {
    if out.len() >= MAX_VALUES || depth > MAX_JSON_DEPTH {
        return;
    }
    // The child that holds the hidden member, and the tokens below that child (none: the child is it).
    let (hidden_child, below) = match hide {
        Some(mut tokens) => (tokens.next(), Some(tokens)),
        None => (None, None),
    };
    let below = below.filter(|t| t.clone().next().is_some());
    let child = |val: &'v serde_json::Value, hidden: bool, out: &mut Items<'v>| match (hidden, &below) {
        (false, _) => collect_json(val, part, None, secrets, out, depth + 1),
        (true, Some(below)) => collect_json(val, part, Some(below.clone()), secrets, out, depth + 1),
        (true, None) => {}
    };
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map {
                if matches!(part, Part::Keys | Part::All) && out.len() < MAX_VALUES {
                    out.push(Cow::Borrowed(k.as_bytes()));
                }
                if secrets.0 && val.is_string() && names_a_secret(k) {
                    continue;
                }
                child(val, hidden_child.as_deref() == Some(k.as_str()), out);
            }
        }
        serde_json::Value::Array(items) => {
            let hidden_index = hidden_child.as_deref().and_then(pointer::index);
            for (i, val) in items.iter().enumerate() {
                child(val, hidden_index == Some(i), out);
            }
        }
        serde_json::Value::String(s) => {
            if matches!(part, Part::Values | Part::All) {
                out.push(Cow::Borrowed(s.as_bytes()));
            }
        }
        serde_json::Value::Null => {}
        other => {
            if matches!(part, Part::Values | Part::All) {
                out.push(Cow::Owned(other.to_string().into_bytes()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_told_from_other_names() {
        for name in [
            "password",
            "PASSWORD",
            "NEW_PASSWORD",
            "PreviousPassword",
            "ProposedPassword",
            "TemporaryPassword",
            "current-password",
            "confirmPassword",
            "password_confirmation",
            "passwordConfirm",
            "password1",
            "password2",
            "passwd",
            "user_pwd",
            "pass",
            "passphrase",
            "client_secret",
            "ClientSecret",
        ] {
            assert!(names_a_secret(name), "{name}");
        }
        for name in [
            "username",
            "email",
            "phone",
            "passport",
            "bypass",
            "compass",
            "password_hint",
            "secret_question",
            "secretAnswer",
            "comment",
            "",
            &"password".repeat(7),
        ] {
            assert!(!names_a_secret(name), "{name}");
        }
    }

    /// What the JSON field held before the walk learnt to skip the password: a copy of the document
    /// with the member at `hidden` set to `null`, read at `pointer`.
    fn by_copy(doc: &serde_json::Value, pointer: &str, hidden: Option<&str>, part: Part) -> Vec<Vec<u8>> {
        fn collect(v: &serde_json::Value, part: Part, out: &mut Vec<Vec<u8>>) {
            match v {
                serde_json::Value::Object(map) => {
                    for (k, val) in map {
                        if matches!(part, Part::Keys | Part::All) {
                            out.push(k.as_bytes().to_vec());
                        }
                        collect(val, part, out);
                    }
                }
                serde_json::Value::Array(items) => items.iter().for_each(|val| collect(val, part, out)),
                serde_json::Value::String(s) if matches!(part, Part::Values | Part::All) => {
                    out.push(s.as_bytes().to_vec())
                }
                serde_json::Value::String(_) | serde_json::Value::Null => {}
                other if matches!(part, Part::Values | Part::All) => out.push(other.to_string().into_bytes()),
                _ => {}
            }
        }
        let mut doc = doc.clone();
        if let Some(v) = hidden.and_then(|h| doc.pointer_mut(h)) {
            *v = serde_json::Value::Null;
        }
        let mut out = Vec::new();
        if let Some(t) = doc.pointer(pointer) {
            collect(t, part, &mut out);
        }
        out
    }

    #[test]
    fn items_hold_one_value_inline_and_read_as_a_slice() {
        let v = |s: &'static str| Cow::Borrowed(s.as_bytes());
        let mut items = Items::default();
        assert!(items.is_empty());
        items.push(v("a"));
        assert!(matches!(items, Items::One(_)));
        assert_eq!(&items[..], &[v("a")]);
        items.push(v("b"));
        items.push(v("c"));
        assert_eq!(&items[..], &[v("a"), v("b"), v("c")]);
        items.truncate(2);
        assert_eq!(&items[..], &[v("a"), v("b")]);
        let one: Items = [v("x")].into_iter().collect();
        assert!(matches!(one, Items::One(_)));
        let mut one = one;
        one.truncate(1);
        assert_eq!(one.len(), 1);
        one.truncate(0);
        assert!(one.is_empty());
        let none: Items = std::iter::empty().collect();
        assert!(none.is_empty());
    }

    #[test]
    fn the_password_is_skipped_where_a_copy_would_hold_null() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"username": "u", "password": "p", "n": 7, "t": true,
                "a": {"b": ["x", {"password": "q", "k": 1.5}], "c~/": "y", "": "e"},
                "list": [["i"], "j", {"password": "r"}]}"#,
        )
        .unwrap();
        let pointers = [
            "",
            "/",
            "/username",
            "/password",
            "/password/x",
            "/a",
            "/a/b",
            "/a/b/1",
            "/a/b/1/password",
            "/a/b/01",
            "/a/c~0~1",
            "/a/c~0/",
            "/a/",
            "/list",
            "/list/2",
            "/list/2/password",
            "/list/0/0",
            "/missing",
            "/missing/password",
            "/n",
            "/t",
        ];
        for hidden in pointers
            .iter()
            .map(|h| Some(*h))
            .chain([None, Some("password"), Some("/a/c~~1")])
        {
            for pointer in pointers.iter().copied().chain(["/a/c~~1", "/a/c~0~1"]) {
                for part in [Part::Keys, Part::Values, Part::All] {
                    let mut items = Items::default();
                    if let Some((target, hide)) = json_target(&doc, pointer, hidden) {
                        collect_json(target, part, hide, Secrets(false), &mut items, 0);
                    }
                    let items: Vec<Vec<u8>> = items.iter().map(|v| v.to_vec()).collect();
                    assert_eq!(
                        items,
                        by_copy(&doc, pointer, hidden, part),
                        "pointer {pointer:?}, hidden {hidden:?}, {part:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_json_body_cut_at_the_limit_keeps_what_was_read() {
        let parsed = |text: &str| parse_truncated(text.as_bytes()).map(|v| v.to_string());
        for (cut, want) in [
            // Cut in a string value: the string is closed where it stops.
            (
                r#"{"a": "root", "pad": "xxx"#,
                Some(r#"{"a":"root","pad":"xxx"}"#),
            ),
            (r#"{"a": ["x", {"b": "ro"#, Some(r#"{"a":["x",{"b":"ro"}]}"#)),
            // In an escape, or in a character: dropped.
            (r#"{"a": "x\"#, Some(r#"{"a":"x"}"#)),
            ("{\"a\": \"\u{e9}\u{e9}", Some("{\"a\":\"\u{e9}\u{e9}\"}")),
            // In a key, a number or a literal: the members before it.
            (r#"{"a": 1, "ke"#, Some(r#"{"a":1}"#)),
            (r#"{"a": [1, 2], "b": tr"#, Some(r#"{"a":[1,2]}"#)),
            (r#"{"a": 1, "b":"#, Some(r#"{"a":1}"#)),
            (r#"[1, 2, 3"#, Some("[1,2,3]")),
            (r#"{"#, Some("{}")),
            // Invalid before the cut: invalid JSON.
            (r#"{"a": root, "b": "x"#, None),
            (r#"{"a": 1}} "x"#, None),
            (r#"{"a": [1}, "x"#, None),
            ("\u{feff}{\"a\": \"x", None),
            (r#""just a string"#, Some(r#""just a string""#)),
            ("hello", None),
        ] {
            assert_eq!(parsed(cut).as_deref(), want, "{cut:?}");
        }
        // A character cut in two at the limit.
        let mut bytes = "{\"a\": \"x\u{e9}".as_bytes().to_vec();
        bytes.pop();
        assert_eq!(
            parse_truncated(&bytes).map(|v| v.to_string()).as_deref(),
            Some(r#"{"a":"x"}"#)
        );
    }
}
