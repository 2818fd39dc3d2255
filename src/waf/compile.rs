//! Compiles the YAML web ACL (the main file's and every included file's) into a [`WebAcl`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use http::{HeaderName, HeaderValue, StatusCode};

use super::field::{Field, Input};
use super::file::{
    FileAction, FileAddress, FileGroup, FileRateKey, FileRule, FileStatement, FileWebAcl, Oversize, Position,
};
use super::ipset::{IpSet, parse_list};
use super::statement::{Address, LabelTest, Matcher, RateKey, RateRule, Statement};
use super::transform::MAX_TRANSFORMS;
use super::{Action, BlockResponse, Rule, RuleBody, WebAcl};
use crate::config::file::Positioned;
use crate::config::{ConfigError, Sources};
use crate::geo::Geo;

/// The `web_acl` section of one file.
pub struct RulePart<'a> {
    pub file: &'a Path,
    pub acl: &'a Positioned<FileWebAcl>,
    /// Only the main config may set `default_action`.
    pub main: bool,
}

/// Compiles every part into one ACL, or every problem found with its position.
pub fn compile(parts: &[RulePart<'_>], geo: &Geo, sources: &dyn Sources) -> Result<WebAcl, Vec<ConfigError>> {
    let mut c = Compiler {
        geo,
        sources,
        inputs: Vec::new(),
        slots: HashMap::new(),
        rate_key_lists: HashMap::new(),
        errors: Vec::new(),
        ip_files: BTreeMap::new(),
        ip_cache: HashMap::new(),
        unreferenced: false,
    };
    let mut default_block = None;
    let mut store_fail_closed = false;
    let mut groups: HashMap<&str, (&Path, &Positioned<FileGroup>)> = HashMap::new();
    let main_default = parts
        .iter()
        .find(|p| p.main)
        .and_then(|p| p.acl.value.default_action.as_ref());
    for part in parts {
        let acl = &part.acl.value;
        let at = (part.file, part.acl.line, part.acl.column);
        if let Some(action) = &acl.default_action {
            // Only the main config sets the default action. An included file (an imported web ACL) may
            // state it too, when it agrees: then it documents the main config's choice and changes nothing.
            if !part.main {
                let agrees = match main_default {
                    Some(main) => main == action,
                    None => *action == FileAction::Allow,
                };
                if !agrees {
                    c.err(
                        at,
                        format!(
                            "`default_action: {}` differs from the main config's default action ({}): only the main config sets it; set it there, or remove it here",
                            action_name(action),
                            main_default.map_or("allow, by default", action_name)
                        ),
                    );
                }
            } else {
                match action {
                    FileAction::Allow => {}
                    FileAction::Block => default_block = Some(Arc::new(default_block_response())),
                    FileAction::BlockWith(b) => match block_response(b) {
                        Ok(r) => default_block = Some(Arc::new(r)),
                        Err(e) => c.err(at, format!("default_action: {e}")),
                    },
                    other => c.err(
                        at,
                        format!(
                            "default_action must be allow or block, not {}",
                            action_name(other)
                        ),
                    ),
                }
            }
        }
        store_fail_closed |= acl.store_failure == super::file::StoreFailure::Closed;
        let dir = part.file.parent().unwrap_or(Path::new(""));
        for (name, path) in &acl.ip_set_files {
            c.ip_files.insert(name.clone(), (dir.join(path), at));
        }
        for g in &acl.groups {
            if let Some(why) = name_problem(&g.value.name) {
                c.err(
                    (part.file, g.line, g.column),
                    format!("rule group name {:?} {why}", g.value.name),
                );
            }
            if let Some((f, prev)) = groups.insert(&g.value.name, (part.file, g)) {
                c.err(
                    (part.file, g.line, g.column),
                    format!(
                        "rule group `{}` is defined twice (also at {}:{})",
                        g.value.name,
                        f.display(),
                        prev.line
                    ),
                );
            }
        }
    }

    // Top-level rules from every file, by priority.
    let mut top: Vec<(&Path, &Positioned<FileRule>)> = parts
        .iter()
        .flat_map(|p| p.acl.value.rules.iter().map(move |r| (p.file, r)))
        .collect();
    top.sort_by_key(|(_, r)| r.value.priority);
    check_unique(&mut c, &top, "web_acl");

    let mut rules = Vec::new();
    for (file, rule) in &top {
        let at = (*file, rule.line, rule.column);
        let r = &rule.value;
        c.names(at, r);
        match (&r.statement, &r.group) {
            (Some(_), Some(_)) => c.err(
                at,
                format!("rule `{}`: give `statement` or `group`, not both", r.name),
            ),
            (None, None) => c.err(at, format!("rule `{}`: needs a `statement` or a `group`", r.name)),
            (Some(s), None) => {
                if !r.rule_overrides.is_empty() {
                    c.err(
                        at,
                        format!(
                            "rule `{}`: `rule_overrides` only applies to a `group` reference",
                            r.name
                        ),
                    );
                }
                let action = c.action(at, &r.name, r.action.as_ref().unwrap_or(&FileAction::Block));
                if let Some(body) = c.rule_body(at, &r.name, s) {
                    rules.push(Rule {
                        name: r.name.clone(),
                        action,
                        labels: r.labels.clone(),
                        shadow: r.shadow,
                        body,
                    });
                }
            }
            (None, Some(group_name)) => {
                let Some((gfile, group)) = groups.get(group_name.as_str()).copied() else {
                    c.err(
                        at,
                        format!("rule `{}`: no rule group named `{group_name}`", r.name),
                    );
                    continue;
                };
                let members = group_members(&mut c, gfile, group);
                for name in r.rule_overrides.keys() {
                    if !members.iter().any(|(_, m)| &m.value.name == name) {
                        c.err(at, format!("rule `{}`: rule_overrides names `{name}`, which group `{group_name}` does not have", r.name));
                    }
                }
                for (mfile, member) in members {
                    let mat = (mfile, member.line, member.column);
                    let m = &member.value;
                    c.names(mat, m);
                    let Some(s) = &m.statement else {
                        c.err(
                            mat,
                            format!(
                                "rule `{}` in group `{group_name}`: groups hold statements, not other groups",
                                m.name
                            ),
                        );
                        continue;
                    };
                    let file_action = r
                        .rule_overrides
                        .get(&m.name)
                        .or(r.action.as_ref())
                        .or(m.action.as_ref())
                        .unwrap_or(&FileAction::Block);
                    let name = format!("{}/{}", r.name, m.name);
                    let action = c.action(mat, &name, file_action);
                    if let Some(body) = c.rule_body(mat, &name, s) {
                        let mut labels = m.labels.clone();
                        labels.extend(r.labels.iter().cloned());
                        rules.push(Rule {
                            name,
                            action,
                            labels,
                            shadow: r.shadow || m.shadow,
                            body,
                        });
                    }
                }
            }
        }
    }
    // A group that no rule references is checked all the same (`authward check rules/common.yaml` must
    // find its mistakes), its members named `group/rule`, except for what the referencing config provides
    // (GeoIP databases, earlier rules' labels); what it compiles to is dropped, so it costs the running
    // ACL nothing (no inputs, no body reading).
    let referenced: Vec<&str> = top.iter().filter_map(|(_, r)| r.value.group.as_deref()).collect();
    let mut unreferenced: Vec<(&str, (&Path, &Positioned<FileGroup>))> = groups
        .iter()
        .filter(|(name, _)| !referenced.contains(*name))
        .map(|(name, g)| (*name, *g))
        .collect();
    unreferenced.sort_by_key(|(_, (file, g))| (file.to_path_buf(), g.line));
    let kept = (c.inputs.clone(), c.slots.clone(), c.rate_key_lists.clone());
    c.unreferenced = true;
    for (group_name, (gfile, group)) in unreferenced {
        for (mfile, member) in group_members(&mut c, gfile, group) {
            let mat = (mfile, member.line, member.column);
            let m = &member.value;
            c.names(mat, m);
            let Some(s) = &m.statement else {
                c.err(
                    mat,
                    format!(
                        "rule `{}` in group `{group_name}`: groups hold statements, not other groups",
                        m.name
                    ),
                );
                continue;
            };
            let name = format!("{group_name}/{}", m.name);
            c.action(mat, &name, m.action.as_ref().unwrap_or(&FileAction::Block));
            c.rule_body(mat, &name, s);
        }
    }
    (c.inputs, c.slots, c.rate_key_lists) = kept;
    c.unreferenced = false;
    lint(&mut c, &rules, &top);

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let needs_body = c.inputs.iter().any(|i| i.field.needs_body());
    Ok(WebAcl {
        rules,
        read_as: super::field::read_as(&c.inputs),
        inputs: c.inputs,
        default_block,
        needs_body,
        store_fail_closed,
        rate_key_lists: c.rate_key_lists.len(),
    })
}

type At<'a> = (&'a Path, u32, u32);

/// The longest rule, group or label name.
const MAX_NAME: usize = 128;
/// The longest label (AWS WAF's limit).
const MAX_LABEL: usize = 1024;

/// Why `name` cannot name a rule or a group: names show in metrics, logs, events and `reference/rule`,
/// so they are 1 to 128 letters, digits, `_`, `-` or `.` (AWS WAF allows letters, digits, `_` and `-`).
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > MAX_NAME {
        Some("is longer than 128 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Some("may hold only letters, digits, `_`, `-` and `.`")
    } else {
        None
    }
}

/// Why `label` is not a label. AWS WAF's syntax: parts of letters, digits, `_` and `-`, joined by `:`
/// into namespaces (`myapp:bot:scanner`), no part empty, at most 1024 characters. Labels travel in the
/// comma-separated `x-authward-labels` header, so a comma, a space or a control character would break it.
pub fn label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        Some("is empty")
    } else if label.len() > MAX_LABEL {
        Some("is longer than 1024 characters")
    } else if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
    {
        Some("may hold only letters, digits, `_` and `-`, in parts joined by `:`")
    } else if label.split(':').any(str::is_empty) {
        Some("has an empty part (a leading, trailing or doubled `:`)")
    } else {
        None
    }
}

/// The shortest rate window: a shorter one counts nothing (`0s` would never match).
const MIN_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest rate window: one day, far past any rate a login service limits.
const MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

struct Compiler<'a> {
    geo: &'a Geo,
    sources: &'a dyn Sources,
    inputs: Vec<Input>,
    slots: HashMap<Input, usize>,
    /// The distinct key lists of rate rules, each with its memo slot.
    rate_key_lists: HashMap<Vec<RateKey>, usize>,
    errors: Vec<ConfigError>,
    ip_files: BTreeMap<String, (PathBuf, At<'a>)>,
    ip_cache: HashMap<String, Result<Vec<ipnet::IpNet>, ()>>,
    /// Compiling a group no rule references, only to check it: what depends on the config that will
    /// reference it (the GeoIP databases) is not checked.
    unreferenced: bool,
}

fn action_name(a: &FileAction) -> &'static str {
    match a {
        FileAction::Allow => "allow",
        FileAction::Block | FileAction::BlockWith(_) => "block",
        FileAction::Count => "count",
        FileAction::Challenge => "challenge",
        FileAction::Captcha => "captcha",
    }
}

fn default_block_response() -> BlockResponse {
    BlockResponse {
        status: StatusCode::FORBIDDEN,
        headers: Vec::new(),
        body: None,
    }
}

fn block_response(b: &super::file::FileBlockResponse) -> Result<BlockResponse, String> {
    let status = StatusCode::from_u16(b.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| format!("status {} is not between 200 and 599", b.status))?;
    let mut headers = Vec::new();
    for (k, v) in &b.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("`{k}` is not a header name"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| format!("the value of header `{k}` is not valid"))?;
        headers.push((name, value));
    }
    Ok(BlockResponse {
        status,
        headers,
        body: b.body.clone().map(bytes::Bytes::from),
    })
}

/// A group's rules by priority, checked for unique names and priorities.
fn group_members<'g>(
    c: &mut Compiler<'_>,
    file: &'g Path,
    group: &'g Positioned<FileGroup>,
) -> Vec<(&'g Path, &'g Positioned<FileRule>)> {
    let mut members: Vec<(&Path, &Positioned<FileRule>)> =
        group.value.rules.iter().map(|m| (file, m)).collect();
    members.sort_by_key(|(_, m)| m.value.priority);
    check_unique(c, &members, &format!("rule group `{}`", group.value.name));
    members
}

fn check_unique(c: &mut Compiler<'_>, rules: &[(&Path, &Positioned<FileRule>)], scope: &str) {
    let mut names: HashMap<&str, u32> = HashMap::new();
    let mut priorities: HashMap<i64, &str> = HashMap::new();
    for (file, r) in rules {
        let at = (*file, r.line, r.column);
        if let Some(line) = names.insert(&r.value.name, r.line) {
            c.err(
                at,
                format!(
                    "{scope}: rule name `{}` is used twice (also on line {line})",
                    r.value.name
                ),
            );
        }
        if let Some(other) = priorities.insert(r.value.priority, &r.value.name) {
            c.err(
                at,
                format!(
                    "{scope}: rules `{other}` and `{}` have the same priority {}",
                    r.value.name, r.value.priority
                ),
            );
        }
    }
}

impl<'a> Compiler<'a> {
    fn err(&mut self, at: At<'_>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: at.0.display().to_string(),
            line: at.1,
            column: at.2,
            message: message.into(),
        });
    }

    /// Checks a rule's name and the labels it adds.
    fn names(&mut self, at: At<'_>, r: &FileRule) {
        if let Some(why) = name_problem(&r.name) {
            self.err(at, format!("rule name {:?} {why}", r.name));
        }
        for label in &r.labels {
            if let Some(why) = label_problem(label) {
                self.err(at, format!("rule `{}`: label {label:?} {why}", r.name));
            }
        }
    }

    /// Checks a label or namespace that a statement or rate key names (a namespace's trailing `:` aside).
    fn label_name(&mut self, at: At<'_>, rule: &str, what: &str, label: &str) {
        if let Some(why) = label_problem(label) {
            self.err(at, format!("rule `{rule}`: {what} {label:?} {why}"));
        }
    }

    /// Checks that a `label_match` in authward's own namespace tests a label authward adds.
    fn builtin_label(&mut self, at: At<'_>, rule: &str, label: &str, namespace: bool) {
        if let Some(why) = crate::profile::unknown_builtin_label(label, namespace) {
            self.err(at, format!("rule `{rule}`: label_match can never match: {why}"));
        }
    }

    fn action(&mut self, at: At<'_>, rule: &str, a: &FileAction) -> Action {
        match a {
            FileAction::Allow => Action::Allow,
            FileAction::Block => Action::Block(Arc::new(default_block_response())),
            FileAction::BlockWith(b) => match block_response(b) {
                Ok(r) => Action::Block(Arc::new(r)),
                Err(e) => {
                    self.err(at, format!("rule `{rule}`: block_with: {e}"));
                    Action::Block(Arc::new(default_block_response()))
                }
            },
            FileAction::Count => Action::Count,
            FileAction::Challenge => Action::Challenge,
            FileAction::Captcha => Action::Captcha,
        }
    }

    fn rule_body(&mut self, at: At<'_>, rule: &str, s: &FileStatement) -> Option<RuleBody> {
        let before = self.errors.len();
        let body = match s {
            FileStatement::RateBased(r) => {
                if r.limit == 0 {
                    self.err(at, format!("rule `{rule}`: rate_based limit must be at least 1"));
                }
                if !(MIN_WINDOW..=MAX_WINDOW).contains(&r.window.get()) {
                    self.err(
                        at,
                        format!(
                            "rule `{rule}`: rate_based window `{}` is out of range: give 1s to 1d (such as 1m or 5m)",
                            r.window
                        ),
                    );
                }
                if r.keys.is_empty() || r.keys.len() > 5 {
                    self.err(at, format!("rule `{rule}`: rate_based takes one to five keys"));
                }
                let scope_down = r.scope_down.as_ref().map(|s| self.statement(at, rule, s));
                let keys: Vec<RateKey> = r.keys.iter().filter_map(|k| self.rate_key(at, rule, k)).collect();
                let distinct = r.distinct.as_ref().and_then(|k| self.rate_key(at, rule, k));
                let keys_memo = self.rate_memo(&keys);
                let distinct_memo = distinct
                    .as_ref()
                    .and_then(|d| self.rate_memo(std::slice::from_ref(d)));
                RuleBody::Rate(RateRule {
                    limit: r.limit.max(1),
                    window: r.window.get(),
                    keys,
                    keys_memo,
                    scope_down,
                    count: r.count,
                    distinct,
                    distinct_memo,
                })
            }
            other => RuleBody::Statement(self.statement(at, rule, other)),
        };
        (self.errors.len() == before).then_some(body)
    }

    /// The memo slot of a rate rule's key list; `None` when a key reads labels (they change during
    /// evaluation, so the digest cannot be shared).
    fn rate_memo(&mut self, keys: &[RateKey]) -> Option<usize> {
        if keys.iter().any(|k| matches!(k, RateKey::LabelNamespace(_))) {
            return None;
        }
        let next = self.rate_key_lists.len();
        Some(*self.rate_key_lists.entry(keys.to_vec()).or_insert(next))
    }

    fn rate_key(&mut self, at: At<'_>, rule: &str, k: &FileRateKey) -> Option<RateKey> {
        let header = |c: &mut Self, n: &str| match HeaderName::from_bytes(n.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                c.err(at, format!("rule `{rule}`: `{n}` is not a header name"));
                None
            }
        };
        Some(match k {
            FileRateKey::Ip => RateKey::Ip,
            FileRateKey::ForwardedIp(h) => RateKey::ForwardedIp(header(self, h)?),
            FileRateKey::Header(h) => RateKey::Header(header(self, h)?),
            FileRateKey::Cookie(n) => RateKey::Cookie(n.clone()),
            FileRateKey::QueryArg(n) => RateKey::QueryArg(n.clone()),
            FileRateKey::UriPath => RateKey::UriPath,
            FileRateKey::Method => RateKey::Method,
            FileRateKey::LabelNamespace(n) => {
                let bare = n.strip_suffix(':').unwrap_or(n);
                self.label_name(at, rule, "label_namespace", bare);
                RateKey::LabelNamespace(format!("{bare}:"))
            }
            FileRateKey::Ja4 => RateKey::Ja4,
            FileRateKey::Username => RateKey::Username,
            FileRateKey::Constant => RateKey::Constant,
        })
    }

    fn slot(
        &mut self,
        field: Field,
        transforms: &[super::transform::Transform],
        hide_password: bool,
    ) -> usize {
        let input = Input {
            field,
            transforms: transforms.to_vec(),
            hide_password,
        };
        if let Some(i) = self.slots.get(&input) {
            return *i;
        }
        self.inputs.push(input.clone());
        self.slots.insert(input, self.inputs.len() - 1);
        self.inputs.len() - 1
    }

    fn field(
        &mut self,
        at: At<'_>,
        rule: &str,
        f: &super::file::FileField,
        transforms: &[super::transform::Transform],
        hide_password: bool,
    ) -> (usize, Oversize) {
        if transforms.len() > MAX_TRANSFORMS {
            self.err(
                at,
                format!("rule `{rule}`: at most {MAX_TRANSFORMS} transforms per statement"),
            );
        }
        match Field::compile(f) {
            Ok((field, oversize)) => (self.slot(field, transforms, hide_password), oversize),
            Err(e) => {
                self.err(at, format!("rule `{rule}`: {e}"));
                (0, Oversize::Continue)
            }
        }
    }

    fn address(&mut self, at: At<'_>, rule: &str, a: &FileAddress) -> Address {
        match a {
            FileAddress::Ip => Address::Client,
            FileAddress::ForwardedIp(f) => match HeaderName::from_bytes(f.header.as_bytes()) {
                Ok(header) => Address::Forwarded {
                    header,
                    position: f.position,
                    fallback_match: f.fallback_match,
                },
                Err(_) => {
                    self.err(at, format!("rule `{rule}`: `{}` is not a header name", f.header));
                    Address::Client
                }
            },
        }
    }

    fn statement(&mut self, at: At<'_>, rule: &str, s: &FileStatement) -> Statement {
        match s {
            FileStatement::And(v) | FileStatement::Or(v) if v.is_empty() => {
                self.err(
                    at,
                    format!("rule `{rule}`: `and`/`or` need at least one statement"),
                );
                Statement::And(Vec::new())
            }
            FileStatement::And(v) => Statement::And(v.iter().map(|s| self.statement(at, rule, s)).collect()),
            FileStatement::Or(v) => Statement::Or(v.iter().map(|s| self.statement(at, rule, s)).collect()),
            FileStatement::Not(s) => Statement::Not(Box::new(self.statement(at, rule, s))),
            FileStatement::ByteMatch(b) => {
                let mut values: Vec<Vec<u8>> = b.values.iter().map(|v| v.as_bytes().to_vec()).collect();
                if let Some(v) = &b.value {
                    values.insert(0, v.as_bytes().to_vec());
                }
                if values.is_empty() {
                    self.err(at, format!("rule `{rule}`: byte_match needs `value` or `values`"));
                }
                let automaton = match b.position {
                    Position::Contains | Position::ContainsWord if !values.is_empty() => {
                        let kind = if b.position == Position::Contains {
                            MatchKind::LeftmostFirst
                        } else {
                            MatchKind::Standard
                        };
                        match AhoCorasick::builder().match_kind(kind).build(&values) {
                            Ok(a) => Some(a),
                            Err(e) => {
                                self.err(at, format!("rule `{rule}`: byte_match: {e}"));
                                None
                            }
                        }
                    }
                    _ => None,
                };
                let (slot, oversize) = self.field(at, rule, &b.field, &b.transforms, true);
                Statement::Match {
                    slot,
                    matcher: Matcher::Bytes {
                        position: b.position,
                        values,
                        automaton,
                    },
                    oversize,
                }
            }
            FileStatement::Regex(r) => {
                let (slot, oversize) = self.field(at, rule, &r.field, &r.transforms, true);
                match regex::bytes::RegexBuilder::new(r.pattern.as_str())
                    .size_limit(1 << 22)
                    .build()
                {
                    Ok(re) => Statement::Match {
                        slot,
                        matcher: Matcher::Regex(re),
                        oversize,
                    },
                    Err(e) => {
                        self.err(at, format!("rule `{rule}`: regex: {e}"));
                        Statement::And(Vec::new())
                    }
                }
            }
            FileStatement::RegexSet(r) => {
                let (slot, oversize) = self.field(at, rule, &r.field, &r.transforms, true);
                if r.patterns.is_empty() {
                    self.err(at, format!("rule `{rule}`: regex_set needs at least one pattern"));
                }
                match regex::bytes::RegexSetBuilder::new(r.patterns.iter().map(|p| p.as_str()))
                    .size_limit(1 << 24)
                    .build()
                {
                    Ok(set) => Statement::Match {
                        slot,
                        matcher: Matcher::RegexSet(set),
                        oversize,
                    },
                    Err(e) => {
                        self.err(at, format!("rule `{rule}`: regex_set: {e}"));
                        Statement::And(Vec::new())
                    }
                }
            }
            FileStatement::Sqli(i) => {
                let (slot, oversize) = self.field(at, rule, &i.field, &i.transforms, true);
                Statement::Match {
                    slot,
                    matcher: Matcher::Sqli(i.sensitivity),
                    oversize,
                }
            }
            FileStatement::Xss(i) => {
                let (slot, oversize) = self.field(at, rule, &i.field, &i.transforms, true);
                Statement::Match {
                    slot,
                    matcher: Matcher::Xss(i.sensitivity),
                    oversize,
                }
            }
            FileStatement::SizeConstraint(s) => {
                let (slot, oversize) = self.field(at, rule, &s.field, &s.transforms, false);
                Statement::Size {
                    slot,
                    comparison: s.comparison,
                    size: s.size.0,
                    oversize,
                }
            }
            FileStatement::IpSet(s) => {
                let mut nets: Vec<ipnet::IpNet> = s.cidrs.iter().map(|c| c.0).collect();
                for name in &s.files {
                    nets.extend(self.ip_file(at, rule, name));
                }
                let address = self.address(at, rule, &s.address);
                Statement::Ip {
                    address,
                    set: Arc::new(IpSet::new(nets)),
                }
            }
            FileStatement::GeoMatch(g) => {
                if !self.geo.has_country() && !self.unreferenced {
                    self.err(
                        at,
                        format!(
                            "rule `{rule}`: geo_match needs `geoip.city` (a MaxMind city or country database)"
                        ),
                    );
                }
                let mut countries = Vec::new();
                for c in &g.countries {
                    let code = c.trim().to_ascii_uppercase();
                    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                        self.err(
                            at,
                            format!("rule `{rule}`: `{c}` is not an ISO 3166-1 alpha-2 country code"),
                        );
                    }
                    countries.push(code);
                }
                let address = self.address(at, rule, &g.address);
                Statement::Geo { address, countries }
            }
            FileStatement::AsnMatch(a) => {
                if !self.geo.has_asn() && !self.unreferenced {
                    self.err(
                        at,
                        format!("rule `{rule}`: asn_match needs `geoip.asn` (a MaxMind ASN database)"),
                    );
                }
                let address = self.address(at, rule, &a.address);
                Statement::Asn {
                    address,
                    asns: a.asns.clone(),
                }
            }
            FileStatement::LabelMatch(l) => match (&l.key, &l.namespace) {
                (Some(k), None) => {
                    self.label_name(at, rule, "label_match key", k);
                    self.builtin_label(at, rule, k, false);
                    Statement::Label(LabelTest::Key(k.clone()))
                }
                (None, Some(ns)) => {
                    let bare = ns.strip_suffix(':').unwrap_or(ns);
                    self.label_name(at, rule, "label_match namespace", bare);
                    let ns = format!("{bare}:");
                    self.builtin_label(at, rule, &ns, true);
                    Statement::Label(LabelTest::Namespace(ns))
                }
                _ => {
                    self.err(
                        at,
                        format!("rule `{rule}`: label_match takes `key` or `namespace`"),
                    );
                    Statement::And(Vec::new())
                }
            },
            FileStatement::RateBased(_) => {
                self.err(
                    at,
                    format!("rule `{rule}`: rate_based must be a rule's whole statement, not nested"),
                );
                Statement::And(Vec::new())
            }
        }
    }

    fn ip_file(&mut self, at: At<'_>, rule: &str, name: &str) -> Vec<ipnet::IpNet> {
        let Some((path, file_at)) = self.ip_files.get(name).cloned() else {
            self.err(at, format!("rule `{rule}`: no ip_set_files entry named `{name}`"));
            return Vec::new();
        };
        if let Some(cached) = self.ip_cache.get(name) {
            return cached.clone().unwrap_or_default();
        }
        let loaded = match self.sources.read(&path) {
            Err(e) => {
                self.err(
                    file_at,
                    format!("ip_set_files.{name}: cannot read {}: {e}", path.display()),
                );
                Err(())
            }
            Ok(bytes) => match parse_list(&String::from_utf8_lossy(&bytes)) {
                Ok(nets) => Ok(nets),
                Err((line, message)) => {
                    self.errors.push(ConfigError {
                        file: path.display().to_string(),
                        line: line as u32,
                        column: 1,
                        message,
                    });
                    Err(())
                }
            },
        };
        self.ip_cache.insert(name.to_string(), loaded.clone());
        loaded.unwrap_or_default()
    }
}

/// Load-time checks a rule author wants: labels tested before any rule adds them, and rules that can
/// never run because an earlier rule matches everything and ends evaluation.
fn lint(c: &mut Compiler<'_>, rules: &[Rule], top: &[(&Path, &Positioned<FileRule>)]) {
    let position = |name: &str| -> (PathBuf, u32, u32) {
        let top_name = name.split('/').next().unwrap_or(name);
        top.iter()
            .find(|(_, r)| r.value.name == top_name)
            .map_or((PathBuf::new(), 0, 0), |(f, r)| {
                (f.to_path_buf(), r.line, r.column)
            })
    };
    let mut added: Vec<&str> = Vec::new();
    let mut ended_by: Option<&str> = None;
    for rule in rules {
        let (f, line, col) = position(&rule.name);
        if let Some(prev) = ended_by {
            c.err((&f, line, col), format!("rule `{}` can never run: rule `{prev}` before it matches every request and ends evaluation", rule.name));
        }
        let mut tests = Vec::new();
        match &rule.body {
            RuleBody::Statement(s) => s.label_tests(&mut tests),
            RuleBody::Rate(r) => {
                if let Some(s) = &r.scope_down {
                    s.label_tests(&mut tests);
                }
            }
        }
        for t in tests {
            let ok = match &t {
                LabelTest::Key(k) => crate::profile::is_builtin_label(k) || added.iter().any(|l| l == k),
                LabelTest::Namespace(ns) => {
                    crate::profile::is_builtin_label(ns) || added.iter().any(|l| l.starts_with(ns.as_str()))
                }
            };
            if !ok {
                let what = match &t {
                    LabelTest::Key(k) => format!("label `{k}`"),
                    LabelTest::Namespace(ns) => format!("label namespace `{ns}`"),
                };
                c.err(
                    (&f, line, col),
                    format!("rule `{}` matches {what}, but no earlier rule adds it", rule.name),
                );
            }
        }
        added.extend(rule.labels.iter().map(String::as_str));
        if let RuleBody::Statement(s) = &rule.body {
            if s.always_true() && !rule.shadow && !matches!(rule.action, Action::Count) && ended_by.is_none()
            {
                ended_by = Some(&rule.name);
            }
        }
    }
}
