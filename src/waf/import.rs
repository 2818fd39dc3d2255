//! `authward import aws-waf`: turns an AWS WAF (wafv2) web ACL or rule group (JSON) into authward YAML.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};

use super::transform::Transform;

/// The converted YAML and what could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// An authward rule file (a `web_acl:` section), with a header comment listing `unconverted`.
    pub yaml: String,
    /// One line per statement or setting that was not converted, e.g.
    /// "rule `X`: RegexPatternSetReferenceStatement (references an ARN) — rule left out".
    pub unconverted: Vec<String>,
}

/// Why the input could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not a web ACL, a rule group or a list of rules.
    #[error("not an AWS WAF web ACL or rule group: {0}")]
    Unrecognized(String),
    /// The YAML writer failed.
    #[error("cannot write YAML: {0}")]
    Yaml(String),
}

/// Converts an AWS WAF web ACL or rule group (JSON) into authward YAML.
///
/// Accepted inputs: the output of `aws wafv2 get-web-acl` / `get-rule-group` (`{"WebACL": …}`,
/// `{"RuleGroup": …}`), the bare `WebACL` or `RuleGroup` object, a CloudFormation resource
/// (`{"Type": "AWS::WAFv2::WebACL", "Properties": …}`), `{"Rules": […]}` or a bare `[…]` of rules.
///
/// A rule with any statement that has no authward equivalent (an ARN reference, a managed rule group, an
/// unsupported transformation or field) is left out whole, never half converted, and named in
/// [`Imported::unconverted`]; so is a setting that is dropped while its rule is kept. Rules whose
/// `label_match` would test a label that no earlier converted rule adds are left out too, so the output
/// always loads. `SearchString` is base64 in the AWS API's JSON, which the CLI prints and every shape but
/// CloudFormation's carries (the `get-web-acl` output, its bare `WebACL`, a list of rules): it is decoded
/// there, and kept as text in a CloudFormation resource, whose `SearchStringBase64` is decoded. A value
/// that does not decode to text leaves its rule out, named in [`Imported::unconverted`].
pub fn aws_waf(json: &str) -> Result<Imported, ImportError> {
    aws_waf_with_groups(json, &[])
}

/// As [`aws_waf`], and turns a `RuleGroupReferenceStatement` whose rule group name is in `known_groups`
/// into a `group:` reference (the group itself comes from its own import, included in the config).
pub fn aws_waf_with_groups(json: &str, known_groups: &[String]) -> Result<Imported, ImportError> {
    let root: Value = serde_json::from_str(json)?;
    let (kind, doc, cloudformation) = classify(&root)?;
    let empty = Map::new();
    let bodies = doc
        .get("CustomResponseBodies")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut cx = Converter {
        unconverted: Vec::new(),
        bodies,
        cloudformation,
        known_groups,
        needs: Vec::new(),
    };
    let rules: &[Value] = match doc {
        Value::Array(a) => a,
        other => other
            .get("Rules")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
    };
    let name = doc
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or("imported")
        .to_string();
    let in_group = kind == Kind::RuleGroup;
    let mut converted: Vec<Converted> = rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| cx.rule(r, i, in_group))
        .collect();
    converted.sort_by_key(|c| c.priority);
    let kept = cx.check_labels(converted);
    let rules = Node::Seq(kept.into_iter().map(|c| c.node).collect());

    let mut acl = Vec::new();
    match kind {
        Kind::WebAcl => {
            cx.web_acl_settings(doc);
            let default = match doc.get("DefaultAction") {
                Some(a) => cx.action(DEFAULT_ACTION, a).unwrap_or_else(|why| {
                    cx.unconverted
                        .push(format!("default_action: {why} — allow is used"));
                    Node::str("allow")
                }),
                None => Node::str("allow"),
            };
            acl.push(("default_action", default));
            acl.push(("rules", rules));
        }
        Kind::RuleGroup => {
            let mut group = vec![("name", Node::str(&name))];
            if let Some(d) = doc
                .get("Description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                group.push(("description", Node::str(d)));
            }
            group.push(("rules", rules));
            acl.push(("groups", Node::Seq(vec![Node::map(group)])));
        }
        Kind::Rules => acl.push(("rules", rules)),
    }
    let tree = Node::map(vec![("web_acl", Node::map(acl))]);
    let body = serde_saphyr::to_string_with_options(
        &tree,
        serde_saphyr::ser_options! { prefer_block_scalars: false },
    )
    .map_err(|e| ImportError::Yaml(e.to_string()))?;

    let mut yaml = String::new();
    let what = match kind {
        Kind::WebAcl => format!("web ACL `{}`", one_line(&name)),
        Kind::RuleGroup => format!("rule group `{}`", one_line(&name)),
        Kind::Rules => "rules".to_string(),
    };
    yaml.push_str(&format!(
        "# Converted from the AWS WAF {what} by `authward import aws-waf`.\n"
    ));
    if let Some(arn) = doc.get("ARN").and_then(Value::as_str) {
        yaml.push_str(&format!("# Source: {}\n", one_line(arn)));
    }
    if kind == Kind::WebAcl {
        yaml.push_str(
            "# Include it from your config: its default_action must then agree with the config's own\n\
             # web_acl.default_action (allow when unset), which is the one that applies.\n",
        );
    }
    if kind == Kind::RuleGroup {
        yaml.push_str(&format!(
            "# Reference it from a config that includes this file: {{name: {0}, priority: 10, group: {0}}}\n",
            one_line(&name)
        ));
    }
    cx.needs.sort();
    cx.needs.dedup();
    for need in &cx.needs {
        yaml.push_str(&format!("# Needs {need}.\n"));
    }
    if cx.unconverted.is_empty() {
        yaml.push_str("# Everything was converted.\n");
    } else {
        yaml.push_str(&format!("# Not converted ({}):\n", cx.unconverted.len()));
        for u in &cx.unconverted {
            yaml.push_str(&format!("#   - {}\n", one_line(u)));
        }
    }
    yaml.push_str(&body);
    Ok(Imported {
        yaml,
        unconverted: cx.unconverted,
    })
}

// === Input shapes ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    WebAcl,
    RuleGroup,
    Rules,
}

/// What the document is, the object that holds it, and whether it is a CloudFormation resource.
fn classify(root: &Value) -> Result<(Kind, &Value, bool), ImportError> {
    let obj = match root {
        Value::Array(_) => return Ok((Kind::Rules, root, false)),
        Value::Object(o) => o,
        other => {
            return Err(ImportError::Unrecognized(format!(
                "the top level is {}",
                type_name(other)
            )));
        }
    };
    if let Some(w) = obj.get("WebACL") {
        return Ok((Kind::WebAcl, w, false));
    }
    if let Some(g) = obj.get("RuleGroup") {
        return Ok((Kind::RuleGroup, g, false));
    }
    if let (Some(t), Some(p)) = (obj.get("Type").and_then(Value::as_str), obj.get("Properties")) {
        return match t {
            "AWS::WAFv2::WebACL" => Ok((Kind::WebAcl, p, true)),
            "AWS::WAFv2::RuleGroup" => Ok((Kind::RuleGroup, p, true)),
            other => Err(ImportError::Unrecognized(format!(
                "CloudFormation type `{other}`"
            ))),
        };
    }
    if obj.contains_key("DefaultAction") {
        return Ok((Kind::WebAcl, root, false));
    }
    if obj.contains_key("Rules") {
        let arn_group = obj
            .get("ARN")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains(":rulegroup/"));
        if arn_group || obj.contains_key("Capacity") || obj.contains_key("Name") {
            return Ok((Kind::RuleGroup, root, false));
        }
        return Ok((Kind::Rules, root, false));
    }
    let keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
    Err(ImportError::Unrecognized(format!(
        "expected `WebACL`, `RuleGroup`, `Rules` or `DefaultAction`, found keys {keys:?}"
    )))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// True when a JSON value is an object with at least one member (AWS writes "unset" as `{}` or leaves it out).
fn non_empty(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

// === Output tree ===

/// A YAML node with ordered keys; `Flow` asks for `[a, b]` / `{k: v}` style.
#[derive(Debug, Clone)]
enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
    Flow(Box<Node>),
}

impl Node {
    fn str(s: &str) -> Node {
        Node::Str(s.to_string())
    }
    fn map(entries: Vec<(&str, Node)>) -> Node {
        Node::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
    fn one(key: &str, value: Node) -> Node {
        Node::map(vec![(key, value)])
    }
    fn flow(self) -> Node {
        Node::Flow(Box::new(self))
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Str(v) => s.serialize_str(v),
            Node::Int(i) => s.serialize_i64(*i),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Node::Flow(inner) => match inner.as_ref() {
                Node::Seq(_) => serde_saphyr::FlowSeq(Unmarked(inner)).serialize(s),
                Node::Map(_) => serde_saphyr::FlowMap(Unmarked(inner)).serialize(s),
                other => other.serialize(s),
            },
        }
    }
}

/// A node inside a flow collection: nested `Flow` marks are dropped (everything there is flow already,
/// and a nested flow wrapper would switch the enclosing block collections to flow style too).
struct Unmarked<'a>(&'a Node);

impl Serialize for Unmarked<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Node::Flow(inner) => Unmarked(inner).serialize(s),
            Node::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&Unmarked(i))?;
                }
                seq.end()
            }
            Node::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &Unmarked(v))?;
                }
                map.end()
            }
            scalar => scalar.serialize(s),
        }
    }
}

// === Conversion ===

/// A label a converted statement tests.
#[derive(Debug, Clone)]
enum LabelTest {
    Key(String),
    Namespace(String),
}

/// One converted rule, before the label check.
struct Converted {
    name: String,
    priority: i64,
    node: Node,
    adds: Vec<String>,
    tests: Vec<LabelTest>,
    group_ref: bool,
}

struct Converter<'a> {
    unconverted: Vec<String>,
    bodies: &'a Map<String, Value>,
    /// The input is a CloudFormation resource: its `SearchString` is plain text, not base64.
    cloudformation: bool,
    known_groups: &'a [String],
    needs: Vec<&'static str>,
}

/// A statement that cannot be converted: the reason, for the report.
type Fail = String;

/// The name [`Converter::action`] reports the default action under.
const DEFAULT_ACTION: &str = "\0default_action";

impl Converter<'_> {
    fn left_out(&mut self, rule: &str, why: &str) {
        self.unconverted
            .push(format!("rule `{rule}`: {why} — rule left out"));
    }

    /// A setting dropped while its rule (or the default action, `rule` = [`DEFAULT_ACTION`]) is kept.
    fn ignored(&mut self, rule: &str, why: &str) {
        if rule == DEFAULT_ACTION {
            self.unconverted.push(format!("default_action: {why} — ignored"));
        } else {
            self.unconverted
                .push(format!("rule `{rule}`: {why} — ignored, rule kept"));
        }
    }

    fn rule(&mut self, r: &Value, index: usize, in_group: bool) -> Option<Converted> {
        let name = str_of(r, "Name").map_or_else(|| format!("rule-{}", index + 1), str::to_string);
        let priority = r.get("Priority").and_then(Value::as_i64).unwrap_or(index as i64);
        let Some(statement) = r.get("Statement") else {
            self.left_out(&name, "no Statement");
            return None;
        };
        let labels: Vec<String> = r
            .get("RuleLabels")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|l| str_of(l, "Name"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for (key, what) in [
            ("CaptchaConfig", "CaptchaConfig (immunity time)"),
            ("ChallengeConfig", "ChallengeConfig (immunity time)"),
        ] {
            if non_empty(r.get(key)) {
                self.ignored(&name, what);
            }
        }
        let mut entries = vec![("name", Node::str(&name)), ("priority", Node::Int(priority))];

        if let Some(g) = statement.get("ManagedRuleGroupStatement") {
            let vendor = str_of(g, "VendorName").unwrap_or("?");
            let group = str_of(g, "Name").unwrap_or("?");
            let hint = managed_hint(group);
            self.left_out(
                &name,
                &format!("ManagedRuleGroupStatement {vendor}/{group} (a managed rule group){hint}"),
            );
            return None;
        }
        if let Some(g) = statement.get("RuleGroupReferenceStatement") {
            if in_group {
                self.left_out(&name, "RuleGroupReferenceStatement inside a rule group");
                return None;
            }
            let arn = str_of(g, "ARN").unwrap_or("");
            let group = group_name_from_arn(arn);
            let Some(group) = group.filter(|g| self.known_groups.iter().any(|k| k == g)) else {
                let shown = group.map_or_else(|| arn.to_string(), |g| format!("`{g}` ({arn})"));
                self.left_out(
                    &name,
                    &format!(
                        "RuleGroupReferenceStatement to rule group {shown}: import that rule group too and name it as a known group"
                    ),
                );
                return None;
            };
            entries.push(("group", Node::str(group)));
            match r.get("OverrideAction") {
                Some(o) if o.get("Count").is_some() => entries.push(("action", Node::str("count"))),
                _ => {}
            }
            let mut overrides: Vec<(String, Node)> = Vec::new();
            for ex in g
                .get("ExcludedRules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(n) = str_of(ex, "Name") {
                    overrides.push((n.to_string(), Node::str("count")));
                }
            }
            for o in g
                .get("RuleActionOverrides")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(n) = str_of(o, "Name") else { continue };
                match o.get("ActionToUse").map(|a| self.action(&name, a)) {
                    Some(Ok(a)) => overrides.push((n.to_string(), a)),
                    Some(Err(why)) => self.ignored(&name, &format!("override of `{n}`: {why}")),
                    None => {}
                }
            }
            if !overrides.is_empty() {
                entries.push(("rule_overrides", Node::Map(overrides)));
            }
            if non_empty(g.get("ScopeDownStatement")) {
                self.left_out(&name, "RuleGroupReferenceStatement with a ScopeDownStatement (authward group references have none)");
                return None;
            }
            if !labels.is_empty() {
                entries.push((
                    "labels",
                    Node::Seq(labels.iter().map(|l| Node::str(l)).collect()).flow(),
                ));
            }
            return Some(Converted {
                name,
                priority,
                node: Node::map(entries),
                adds: labels,
                tests: Vec::new(),
                group_ref: true,
            });
        }

        let mut tests = Vec::new();
        let statement = match self.top_statement(&name, statement, &mut tests) {
            Ok(s) => s,
            Err(why) => {
                self.left_out(&name, &why);
                return None;
            }
        };
        let action = match r.get("Action") {
            Some(a) => match self.action(&name, a) {
                Ok(a) => a,
                Err(why) => {
                    self.left_out(&name, &why);
                    return None;
                }
            },
            None => {
                self.left_out(&name, "no Action");
                return None;
            }
        };
        entries.push(("action", action));
        if !labels.is_empty() {
            entries.push((
                "labels",
                Node::Seq(labels.iter().map(|l| Node::str(l)).collect()).flow(),
            ));
        }
        entries.push(("statement", statement));
        Some(Converted {
            name,
            priority,
            node: Node::map(entries),
            adds: labels,
            tests,
            group_ref: false,
        })
    }

    /// Drops rules whose label tests no earlier kept rule (or a profile) satisfies, in priority order.
    fn check_labels(&mut self, rules: Vec<Converted>) -> Vec<Converted> {
        let mut added: Vec<String> = Vec::new();
        let mut open = false;
        let mut kept = Vec::new();
        for c in rules {
            let missing = c.tests.iter().find(|t| {
                let ok = match t {
                    LabelTest::Key(k) => crate::profile::is_builtin_label(k) || added.iter().any(|l| l == k),
                    LabelTest::Namespace(ns) => {
                        crate::profile::is_builtin_label(ns)
                            || added.iter().any(|l| l.starts_with(ns.as_str()))
                    }
                };
                !ok && !open
            });
            if let Some(t) = missing {
                let what = match t {
                    LabelTest::Key(k) => format!("label `{k}`"),
                    LabelTest::Namespace(ns) => format!("label namespace `{ns}`"),
                };
                let why = format!("LabelMatchStatement on {what}, which no earlier converted rule adds");
                self.left_out(&c.name, &why);
                continue;
            }
            // The labels of a referenced group are not known here: trust later label tests.
            open |= c.group_ref;
            added.extend(c.adds.iter().cloned());
            kept.push(c);
        }
        kept
    }

    fn web_acl_settings(&mut self, doc: &Value) {
        let settings = [
            ("CaptchaConfig", "CaptchaConfig (immunity time)"),
            ("ChallengeConfig", "ChallengeConfig (immunity time)"),
            ("TokenDomains", "TokenDomains"),
            (
                "AssociationConfig",
                "AssociationConfig (body inspection size; set `listen.body_limit` instead)",
            ),
            ("DataProtectionConfig", "DataProtectionConfig (log redaction)"),
            (
                "PreProcessFirewallManagerRuleGroups",
                "PreProcessFirewallManagerRuleGroups (Firewall Manager rules)",
            ),
            (
                "PostProcessFirewallManagerRuleGroups",
                "PostProcessFirewallManagerRuleGroups (Firewall Manager rules)",
            ),
        ];
        for (key, what) in settings {
            if non_empty(doc.get(key)) {
                self.unconverted.push(format!("web ACL setting {what} — ignored"));
            }
        }
    }

    /// A rule or default action.
    fn action(&mut self, rule: &str, a: &Value) -> Result<Node, Fail> {
        let obj = a
            .as_object()
            .ok_or_else(|| "the action is not an object".to_string())?;
        let (kind, body) = obj.iter().next().ok_or_else(|| "empty action".to_string())?;
        if kind != "Block" && non_empty(body.get("CustomRequestHandling")) {
            self.ignored(
                rule,
                &format!("{kind} CustomRequestHandling (headers inserted toward the upstream)"),
            );
        }
        Ok(match kind.as_str() {
            "Allow" => Node::str("allow"),
            "Count" => Node::str("count"),
            "Captcha" => Node::str("captcha"),
            "Challenge" => Node::str("challenge"),
            "Block" => match body.get("CustomResponse").filter(|c| non_empty(Some(c))) {
                None => Node::str("block"),
                Some(c) => Node::one("block_with", self.block_response(rule, c)?),
            },
            other => return Err(format!("action {other} (not supported)")),
        })
    }

    fn block_response(&mut self, rule: &str, c: &Value) -> Result<Node, Fail> {
        let status = c.get("ResponseCode").and_then(Value::as_i64).unwrap_or(403);
        if !(200..=599).contains(&status) {
            return Err(format!(
                "Block CustomResponse with ResponseCode {status} (authward answers 200–599)"
            ));
        }
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for h in c
            .get("ResponseHeaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(n), Some(v)) = (str_of(h, "Name"), str_of(h, "Value")) else {
                continue;
            };
            let name = n.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                self.ignored(rule, &format!("response header `{n}` (not a valid header)"));
                continue;
            }
            headers.insert(name, v.to_string());
        }
        let mut body = None;
        if let Some(key) = str_of(c, "CustomResponseBodyKey") {
            match self.bodies.get(key) {
                Some(b) => {
                    body = str_of(b, "Content").map(str::to_string);
                    let ct = match str_of(b, "ContentType") {
                        Some("APPLICATION_JSON") => Some("application/json"),
                        Some("TEXT_HTML") => Some("text/html"),
                        Some("TEXT_PLAIN") => Some("text/plain"),
                        _ => None,
                    };
                    if let Some(ct) = ct {
                        headers.entry("content-type".to_string()).or_insert_with(|| ct.to_string());
                    }
                }
                None => self.ignored(
                    rule,
                    &format!("custom response body `{key}` (defined in another web ACL's CustomResponseBodies; authward's default body is sent)"),
                ),
            }
        }
        let mut entries = vec![("status", Node::Int(status))];
        if !headers.is_empty() {
            entries.push((
                "headers",
                Node::Map(headers.into_iter().map(|(k, v)| (k, Node::Str(v))).collect()).flow(),
            ));
        }
        if let Some(b) = body {
            entries.push(("body", Node::Str(b)));
        }
        Ok(Node::map(entries))
    }

    /// A rule's whole statement: the only place a rate-based statement may appear.
    fn top_statement(&mut self, rule: &str, s: &Value, tests: &mut Vec<LabelTest>) -> Result<Node, Fail> {
        match s.get("RateBasedStatement") {
            Some(r) => self.rate_based(rule, r, tests),
            None => self.statement(rule, s, tests),
        }
    }

    fn statement(&mut self, rule: &str, s: &Value, tests: &mut Vec<LabelTest>) -> Result<Node, Fail> {
        let obj = s
            .as_object()
            .ok_or_else(|| "a statement is not an object".to_string())?;
        let (kind, b) = obj
            .iter()
            .next()
            .ok_or_else(|| "an empty statement".to_string())?;
        let node = match kind.as_str() {
            "AndStatement" | "OrStatement" => {
                let list = b
                    .get("Statements")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("{kind} without Statements"))?;
                if list.is_empty() {
                    return Err(format!("{kind} with no statements"));
                }
                let children = list
                    .iter()
                    .map(|c| self.statement(rule, c, tests))
                    .collect::<Result<Vec<_>, _>>()?;
                Node::one(
                    if kind == "AndStatement" { "and" } else { "or" },
                    Node::Seq(children),
                )
            }
            "NotStatement" => {
                let inner = b
                    .get("Statement")
                    .ok_or_else(|| "NotStatement without Statement".to_string())?;
                Node::one("not", self.statement(rule, inner, tests)?)
            }
            "ByteMatchStatement" => {
                let value = self.search_string(b)?;
                let position = match str_of(b, "PositionalConstraint").unwrap_or("CONTAINS") {
                    "EXACTLY" => "exactly",
                    "STARTS_WITH" => "starts_with",
                    "ENDS_WITH" => "ends_with",
                    "CONTAINS" => "contains",
                    "CONTAINS_WORD" => "contains_word",
                    other => return Err(format!("ByteMatchStatement PositionalConstraint {other}")),
                };
                let transforms = transforms(b)?;
                self.matching(rule, b, |field| {
                    let mut e = vec![
                        ("field", field),
                        ("position", Node::str(position)),
                        ("value", Node::Str(value.clone())),
                    ];
                    push_transforms(&mut e, &transforms);
                    Node::one("byte_match", Node::map(e))
                })?
            }
            "RegexMatchStatement" => {
                let pattern = str_of(b, "RegexString")
                    .ok_or_else(|| "RegexMatchStatement without RegexString".to_string())?;
                pattern.parse::<crate::config::types::Pattern>().map_err(|e| {
                    format!("RegexMatchStatement pattern `{pattern}` is not valid in authward's regex syntax ({})", e.0)
                })?;
                let transforms = transforms(b)?;
                self.matching(rule, b, |field| {
                    let mut e = vec![("field", field), ("pattern", Node::str(pattern))];
                    push_transforms(&mut e, &transforms);
                    Node::one("regex", Node::map(e))
                })?
            }
            "RegexPatternSetReferenceStatement" => {
                return Err(format!(
                    "RegexPatternSetReferenceStatement (references an ARN: {}; copy its patterns into a regex_set statement)",
                    str_of(b, "ARN").unwrap_or("?")
                ));
            }
            "IPSetReferenceStatement" => {
                return Err(format!(
                    "IPSetReferenceStatement (references the IP set {}; put its addresses in an ip_set statement or in ip_set_files)",
                    str_of(b, "ARN").unwrap_or("?")
                ));
            }
            "SqliMatchStatement" | "XssMatchStatement" => {
                let transforms = transforms(b)?;
                let high = str_of(b, "SensitivityLevel") == Some("HIGH");
                let key = if kind == "SqliMatchStatement" {
                    "sqli"
                } else {
                    "xss"
                };
                self.matching(rule, b, |field| {
                    let mut e = vec![("field", field)];
                    push_transforms(&mut e, &transforms);
                    if high {
                        e.push(("sensitivity", Node::str("high")));
                    }
                    Node::one(key, Node::map(e))
                })?
            }
            "SizeConstraintStatement" => {
                let comparison = match str_of(b, "ComparisonOperator").unwrap_or("") {
                    "EQ" => "eq",
                    "NE" => "ne",
                    "LT" => "lt",
                    "LE" => "le",
                    "GT" => "gt",
                    "GE" => "ge",
                    other => return Err(format!("SizeConstraintStatement ComparisonOperator `{other}`")),
                };
                let size = b
                    .get("Size")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| "SizeConstraintStatement without Size".to_string())?;
                let transforms = transforms(b)?;
                self.matching(rule, b, |field| {
                    let mut e = vec![
                        ("field", field),
                        ("comparison", Node::str(comparison)),
                        ("size", Node::Int(size)),
                    ];
                    push_transforms(&mut e, &transforms);
                    Node::one("size_constraint", Node::map(e))
                })?
            }
            "GeoMatchStatement" => {
                let codes: Vec<Node> = b
                    .get("CountryCodes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(Node::str).collect())
                    .unwrap_or_default();
                if codes.is_empty() {
                    return Err("GeoMatchStatement without CountryCodes".into());
                }
                self.needs
                    .push("`geoip.city` (a MaxMind city or country database) for geo_match");
                let mut e = vec![("countries", Node::Seq(codes).flow())];
                if let Some(a) = forwarded_address(b.get("ForwardedIPConfig"))? {
                    e.push(("address", a));
                }
                Node::one("geo_match", Node::map(e))
            }
            "AsnMatchStatement" => {
                let mut asns = Vec::new();
                for a in b.get("AsnList").and_then(Value::as_array).into_iter().flatten() {
                    let n = a
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("AsnMatchStatement ASN {a}"))?;
                    asns.push(Node::Int(i64::from(n)));
                }
                if asns.is_empty() {
                    return Err("AsnMatchStatement without AsnList".into());
                }
                self.needs
                    .push("`geoip.asn` (a MaxMind ASN database) for asn_match");
                let mut e = vec![("asns", Node::Seq(asns).flow())];
                if let Some(a) = forwarded_address(b.get("ForwardedIPConfig"))? {
                    e.push(("address", a));
                }
                Node::one("asn_match", Node::map(e))
            }
            "LabelMatchStatement" => {
                let key = str_of(b, "Key").ok_or_else(|| "LabelMatchStatement without Key".to_string())?;
                if key.starts_with("awswaf:managed:") {
                    return Err(format!(
                        "LabelMatchStatement on `{key}`, a label of an AWS managed rule group"
                    ));
                }
                let key = local_label(key);
                match str_of(b, "Scope").unwrap_or("LABEL") {
                    "NAMESPACE" => {
                        let ns = if key.ends_with(':') {
                            key.to_string()
                        } else {
                            format!("{key}:")
                        };
                        tests.push(LabelTest::Namespace(ns.clone()));
                        Node::one("label_match", Node::one("namespace", Node::Str(ns)).flow())
                    }
                    _ => {
                        tests.push(LabelTest::Key(key.to_string()));
                        Node::one("label_match", Node::one("key", Node::str(key)).flow())
                    }
                }
            }
            "RateBasedStatement" => return Err("RateBasedStatement nested inside another statement".into()),
            "ManagedRuleGroupStatement" | "RuleGroupReferenceStatement" => {
                return Err(format!("{kind} nested inside another statement"));
            }
            other => return Err(format!("{other} (no authward equivalent)")),
        };
        Ok(node)
    }

    /// Builds a match statement over the statement's FieldToMatch; several JSON paths become an `or`.
    fn matching(&mut self, rule: &str, b: &Value, build: impl Fn(Node) -> Node) -> Result<Node, Fail> {
        let f = b
            .get("FieldToMatch")
            .ok_or_else(|| "a match statement without FieldToMatch".to_string())?;
        let mut fields = self.field(rule, f)?;
        if fields.len() == 1 {
            return Ok(build(fields.remove(0)));
        }
        Ok(Node::one(
            "or",
            Node::Seq(fields.into_iter().map(build).collect()),
        ))
    }

    fn field(&mut self, rule: &str, f: &Value) -> Result<Vec<Node>, Fail> {
        let obj = f
            .as_object()
            .ok_or_else(|| "FieldToMatch is not an object".to_string())?;
        let (kind, b) = obj
            .iter()
            .next()
            .ok_or_else(|| "an empty FieldToMatch".to_string())?;
        let oversize = |b: &Value| -> Option<&'static str> {
            match str_of(b, "OversizeHandling") {
                Some("MATCH") => Some("match"),
                Some("NO_MATCH") => Some("no_match"),
                _ => None,
            }
        };
        let field = match kind.as_str() {
            "Method" => Node::str("method"),
            "UriPath" => Node::str("uri_path"),
            "QueryString" => Node::str("query_string"),
            "AllQueryArguments" => Node::str("all_query_args"),
            "SingleQueryArgument" => {
                let n = str_of(b, "Name").ok_or_else(|| "SingleQueryArgument without Name".to_string())?;
                Node::one("single_query_arg", Node::str(n)).flow()
            }
            "SingleHeader" => {
                let n = str_of(b, "Name").ok_or_else(|| "SingleHeader without Name".to_string())?;
                Node::one("single_header", Node::Str(n.to_ascii_lowercase())).flow()
            }
            "Headers" | "Cookies" => {
                let (inc, exc, key) = if kind == "Headers" {
                    ("IncludedHeaders", "ExcludedHeaders", "headers")
                } else {
                    ("IncludedCookies", "ExcludedCookies", "cookies")
                };
                let mut e = Vec::new();
                if let Some(p) = scope_part(b)? {
                    e.push(("part", Node::str(p)));
                }
                let pattern = b.get("MatchPattern");
                let names = |k: &str| -> Vec<Node> {
                    pattern
                        .and_then(|p| p.get(k))
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|s| {
                                    Node::Str(if key == "headers" {
                                        s.to_ascii_lowercase()
                                    } else {
                                        s.to_string()
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let (included, excluded) = (names(inc), names(exc));
                if !included.is_empty() {
                    e.push(("include", Node::Seq(included).flow()));
                } else if !excluded.is_empty() {
                    e.push(("exclude", Node::Seq(excluded).flow()));
                }
                if oversize(b).is_some() {
                    self.ignored(
                        rule,
                        &format!("{kind} OversizeHandling (authward reads every header and cookie)"),
                    );
                }
                Node::one(key, Node::map(e).flow()).flow()
            }
            "Body" => {
                let e = oversize(b)
                    .map(|o| vec![("oversize", Node::str(o))])
                    .unwrap_or_default();
                Node::one("body", Node::map(e).flow()).flow()
            }
            "JsonBody" => return self.json_body(b),
            "HeaderOrder" => Node::str("header_order"),
            "JA4Fingerprint" => {
                if str_of(b, "FallbackBehavior") == Some("MATCH") {
                    self.ignored(
                        rule,
                        "JA4Fingerprint FallbackBehavior MATCH (without a fingerprint the field is empty)",
                    );
                }
                Node::str("ja4")
            }
            "JA3Fingerprint" => return Err("FieldToMatch JA3Fingerprint (authward has JA4 only)".into()),
            "UriFragment" => {
                return Err("FieldToMatch UriFragment (a fragment never reaches authward)".into());
            }
            other => return Err(format!("FieldToMatch {other} (no authward equivalent)")),
        };
        Ok(vec![field])
    }

    fn json_body(&mut self, b: &Value) -> Result<Vec<Node>, Fail> {
        let mut common = Vec::new();
        match scope_part(b)? {
            Some("values") | None => {}
            Some(p) => common.push(("part", Node::str(p))),
        }
        match str_of(b, "InvalidFallbackBehavior") {
            Some("MATCH") => common.push(("invalid", Node::str("match"))),
            Some("NO_MATCH") => common.push(("invalid", Node::str("no_match"))),
            _ => {}
        }
        match str_of(b, "OversizeHandling") {
            Some("MATCH") => common.push(("oversize", Node::str("match"))),
            Some("NO_MATCH") => common.push(("oversize", Node::str("no_match"))),
            _ => {}
        }
        let paths: Vec<&str> = b
            .get("MatchPattern")
            .and_then(|p| p.get("IncludedPaths"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let make = |pointer: Option<&str>| {
            let mut e: Vec<(&str, Node)> = Vec::new();
            if let Some(p) = pointer {
                e.push(("pointer", Node::str(p)));
            }
            e.extend(common.iter().cloned());
            Node::one("json_body", Node::map(e).flow()).flow()
        };
        for p in &paths {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!("JsonBody IncludedPaths `{p}` is not a JSON pointer"));
            }
        }
        if paths.is_empty() {
            return Ok(vec![make(None)]);
        }
        Ok(paths.into_iter().map(|p| make(Some(p))).collect())
    }

    /// The text a byte match looks for: `SearchString` decoded from base64 (the API's JSON), or as it is in
    /// a CloudFormation resource; `SearchStringBase64` decoded. Control characters (a CRLF) stay in the
    /// text; the YAML writer escapes them. An error, never a guess, for what does not decode to text.
    fn search_string(&self, b: &Value) -> Result<String, Fail> {
        let decode = |key: &str, s: &str| -> Result<String, Fail> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| {
                    format!(
                        "{key} `{}` is not base64 (the AWS API and CLI carry it base64-encoded; only a CloudFormation template's SearchString is plain text)",
                        one_line(s)
                    )
                })?;
            String::from_utf8(bytes).map_err(|_| {
                format!(
                    "{key} `{}` decodes to bytes that are not UTF-8 text (a byte_match value is text)",
                    one_line(s)
                )
            })
        };
        if let Some(s) = str_of(b, "SearchStringBase64") {
            return decode("SearchStringBase64", s);
        }
        let s =
            str_of(b, "SearchString").ok_or_else(|| "ByteMatchStatement without SearchString".to_string())?;
        if self.cloudformation {
            Ok(s.to_string())
        } else {
            decode("SearchString", s)
        }
    }

    fn rate_based(&mut self, rule: &str, r: &Value, tests: &mut Vec<LabelTest>) -> Result<Node, Fail> {
        let limit = r
            .get("Limit")
            .and_then(Value::as_u64)
            .ok_or_else(|| "RateBasedStatement without Limit".to_string())?;
        let limit = u32::try_from(limit).map_err(|_| {
            format!(
                "RateBasedStatement Limit {limit} (authward takes up to {})",
                u32::MAX
            )
        })?;
        let window = r
            .get("EvaluationWindowSec")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        let header = r
            .get("ForwardedIPConfig")
            .and_then(|f| str_of(f, "HeaderName"))
            .map(str::to_ascii_lowercase);
        if r.get("ForwardedIPConfig")
            .and_then(|f| str_of(f, "FallbackBehavior"))
            == Some("MATCH")
        {
            self.ignored(
                rule,
                "ForwardedIPConfig FallbackBehavior MATCH (requests without a valid address are not counted)",
            );
        }
        let forwarded = || {
            header
                .clone()
                .map(|h| Node::one("forwarded_ip", Node::Str(h)).flow())
                .ok_or_else(|| "a forwarded IP key without ForwardedIPConfig".to_string())
        };
        let mut keys = Vec::new();
        match str_of(r, "AggregateKeyType").unwrap_or("IP") {
            "IP" => keys.push(Node::str("ip")),
            "FORWARDED_IP" => keys.push(forwarded()?),
            "CONSTANT" => keys.push(Node::str("constant")),
            "CUSTOM_KEYS" => {
                let custom = r
                    .get("CustomKeys")
                    .and_then(Value::as_array)
                    .ok_or_else(|| "CUSTOM_KEYS without CustomKeys".to_string())?;
                for k in custom {
                    let Some((kind, kb)) = k.as_object().and_then(|o| o.iter().next()) else {
                        continue;
                    };
                    if matches!(kind.as_str(), "Header" | "Cookie" | "QueryArgument" | "UriPath")
                        && transforms(kb).is_ok_and(|t| !t.is_empty())
                    {
                        self.ignored(rule, &format!("TextTransformations of the {kind} aggregation key (authward keys on the raw value)"));
                    }
                    let named = |what: &str, lower: bool| -> Result<Node, Fail> {
                        let n = str_of(kb, "Name").ok_or_else(|| format!("{kind} key without Name"))?;
                        Ok(Node::one(
                            what,
                            Node::Str(if lower {
                                n.to_ascii_lowercase()
                            } else {
                                n.to_string()
                            }),
                        )
                        .flow())
                    };
                    keys.push(match kind.as_str() {
                        "IP" => Node::str("ip"),
                        "ForwardedIP" => forwarded()?,
                        "HTTPMethod" => Node::str("method"),
                        "UriPath" => Node::str("uri_path"),
                        "Header" => named("header", true)?,
                        "Cookie" => named("cookie", false)?,
                        "QueryArgument" => named("query_arg", false)?,
                        "LabelNamespace" => {
                            let ns = str_of(kb, "Namespace")
                                .ok_or_else(|| "LabelNamespace key without Namespace".to_string())?;
                            Node::one("label_namespace", Node::str(local_label(ns))).flow()
                        }
                        "JA4Fingerprint" => Node::str("ja4"),
                        other => {
                            return Err(format!(
                                "RateBasedStatement aggregation key {other} (no authward equivalent)"
                            ));
                        }
                    });
                }
                if keys.is_empty() || keys.len() > 5 {
                    return Err(format!(
                        "RateBasedStatement with {} custom keys (authward takes one to five)",
                        keys.len()
                    ));
                }
            }
            other => return Err(format!("RateBasedStatement AggregateKeyType {other}")),
        }
        let mut e = vec![
            ("limit", Node::Int(i64::from(limit))),
            ("window", Node::Str(duration(window))),
        ];
        e.push(("keys", Node::Seq(keys).flow()));
        if let Some(s) = r.get("ScopeDownStatement").filter(|s| non_empty(Some(s))) {
            e.push(("scope_down", self.statement(rule, s, tests)?));
        }
        Ok(Node::one("rate_based", Node::map(e)))
    }
}

/// `MatchScope` → `part`.
fn scope_part(b: &Value) -> Result<Option<&'static str>, Fail> {
    Ok(match str_of(b, "MatchScope") {
        None => None,
        Some("ALL") => Some("all"),
        Some("KEY") => Some("keys"),
        Some("VALUE") => Some("values"),
        Some(other) => return Err(format!("MatchScope {other}")),
    })
}

/// `ForwardedIPConfig` → `address: {forwarded_ip: …}` (absent: the client address).
fn forwarded_address(f: Option<&Value>) -> Result<Option<Node>, Fail> {
    let Some(f) = f.filter(|f| non_empty(Some(f))) else {
        return Ok(None);
    };
    let header = str_of(f, "HeaderName").ok_or_else(|| "ForwardedIPConfig without HeaderName".to_string())?;
    let mut e = vec![("header", Node::Str(header.to_ascii_lowercase()))];
    if let Some(p) = str_of(f, "Position") {
        e.push(("position", Node::Str(p.to_ascii_lowercase())));
    }
    if str_of(f, "FallbackBehavior") == Some("MATCH") {
        e.push(("fallback_match", Node::Bool(true)));
    }
    Ok(Some(Node::one("forwarded_ip", Node::map(e).flow()).flow()))
}

/// `TextTransformations`, ordered by `Priority`, as authward names; `NONE` is dropped.
fn transforms(b: &Value) -> Result<Vec<Node>, Fail> {
    let mut list: Vec<(i64, &str)> = b
        .get("TextTransformations")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t.get("Priority").and_then(Value::as_i64).unwrap_or(0),
                        str_of(t, "Type").unwrap_or("NONE"),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort_by_key(|(p, _)| *p);
    let mut out = Vec::new();
    for (_, t) in list {
        if t == "NONE" {
            continue;
        }
        let name = t.to_ascii_lowercase();
        match serde_json::from_value::<Transform>(Value::String(name)) {
            Ok(tr) => out.push(Node::str(tr.name())),
            Err(_) => return Err(format!("text transformation {t} (no authward equivalent)")),
        }
    }
    Ok(out)
}

fn push_transforms(e: &mut Vec<(&str, Node)>, t: &[Node]) {
    if !t.is_empty() {
        e.push(("transforms", Node::Seq(t.to_vec()).flow()));
    }
}

/// Seconds as an authward duration: `5m`, `1h`, `90s`.
fn duration(secs: u64) -> String {
    match secs {
        0 => "300s".to_string(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The name of a rule group from its ARN (`arn:aws:wafv2:REGION:ACCOUNT:regional/rulegroup/NAME/ID`).
fn group_name_from_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split('/');
    while let Some(p) = parts.next() {
        if p.ends_with("rulegroup") {
            return parts.next().filter(|n| !n.is_empty());
        }
    }
    None
}

/// A fully qualified label of this web ACL or rule group (`awswaf:ACCOUNT:webacl:NAME:rest`) as the rule
/// labels it was added with (`rest`).
fn local_label(key: &str) -> &str {
    let parts: Vec<&str> = key.splitn(5, ':').collect();
    match parts.as_slice() {
        ["awswaf", _, "webacl" | "rulegroup", _, rest] if !rest.is_empty() => rest,
        _ => key,
    }
}

/// Where to look instead of an AWS managed rule group.
fn managed_hint(group: &str) -> &'static str {
    match group {
        "AWSManagedRulesCommonRuleSet"
        | "AWSManagedRulesSQLiRuleSet"
        | "AWSManagedRulesKnownBadInputsRuleSet"
        | "AWSManagedRulesLinuxRuleSet"
        | "AWSManagedRulesUnixRuleSet" => "; authward's nearest is rules/common.yaml (group `common`)",
        "AWSManagedRulesATPRuleSet" | "AWSManagedRulesACFPRuleSet" | "AWSManagedRulesBotControlRuleSet" => {
            "; authward's nearest is rules/login-protection.yaml (group `login-protection`)"
        }
        "AWSManagedRulesAmazonIpReputationList" | "AWSManagedRulesAnonymousIpList" => {
            "; authward's nearest is rules/ip-reputation.yaml with your own lists"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::file::FileConfig;
    use crate::config::{Config, ConfigErrors, Mode, Sources, parse_str};
    use crate::waf::file::{FileAction, FileField, FileRateKey, FileStatement, Part, Position};

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    fn sample(name: &str) -> String {
        std::fs::read_to_string(repo(&format!("tests/aws-waf/{name}"))).unwrap()
    }

    /// Files for loading converted output and the guide's examples: MaxMind test databases under any
    /// `*City*.mmdb` / `*Country*.mmdb` / `*ASN*.mmdb` name, a small list for any `.txt`, the files given,
    /// and the repository's own files (rules/) for everything else.
    struct TestSources {
        files: BTreeMap<PathBuf, String>,
    }

    impl Sources for TestSources {
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.ends_with(".mmdb") {
                let db = if name.contains("ASN") {
                    "GeoLite2-ASN-Test.mmdb"
                } else {
                    "GeoIP2-City-Test.mmdb"
                };
                return std::fs::read(repo(&format!("data/geoip/{db}")));
            }
            if let Some(text) = self.files.get(path) {
                return Ok(text.clone().into_bytes());
            }
            if name.ends_with(".txt") {
                return Ok(b"# example list\n192.0.2.0/24\n2001:db8::/32\n".to_vec());
            }
            std::fs::read(repo(&path.to_string_lossy()))
        }
        fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, String> {
            let p = glob::Pattern::new(&pattern.to_string_lossy()).map_err(|e| e.to_string())?;
            let mut out: Vec<PathBuf> = self.files.keys().filter(|f| p.matches_path(f)).cloned().collect();
            let root = repo("");
            for entry in glob::glob(&root.join(pattern).to_string_lossy()).map_err(|e| e.to_string())? {
                let entry = entry.map_err(|e| e.to_string())?;
                out.push(entry.strip_prefix(&root).map(Path::to_path_buf).unwrap_or(entry));
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
    }

    fn load(main: &str, others: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let mut files: BTreeMap<PathBuf, String> = others
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        files.insert(PathBuf::from("authward.yaml"), main.to_string());
        crate::config::load_from(Path::new("authward.yaml"), Mode::Check, &TestSources { files })
    }

    const GEOIP: &str = "geoip:\n  city: GeoIP2-City-Test.mmdb\n  asn: GeoLite2-ASN-Test.mmdb\n";

    fn rules_of(yaml: &str) -> Vec<crate::waf::file::FileRule> {
        let file: FileConfig = parse_str(Path::new("out.yaml"), yaml).unwrap();
        let acl = file.web_acl.unwrap().value;
        let mut rules: Vec<_> = acl.rules.into_iter().map(|r| r.value).collect();
        for g in acl.groups {
            rules.extend(g.value.rules.into_iter().map(|r| r.value));
        }
        rules
    }

    fn rule<'a>(rules: &'a [crate::waf::file::FileRule], name: &str) -> &'a crate::waf::file::FileRule {
        rules
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no rule {name}"))
    }

    #[test]
    fn web_acl_converts_every_rule_and_loads() {
        let out = aws_waf(&sample("web-acl.json")).unwrap();
        let config = load(&format!("{}{GEOIP}", out.yaml), &[])
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{}", out.yaml));
        let names: Vec<&str> = config.web_acl.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "block-admin-path",
                "scanner-user-agent",
                "block-labelled-scanners",
                "sqli-json-credentials",
                "xss-query-and-cookies",
                "oversize-body",
                "hosting-asns",
                "login-rate-per-client",
                "forwarded-ip-rate",
                "header-probe"
            ]
        );
        // Only dropped settings are reported: the header key's transformations (NONE) are not one.
        assert!(out.unconverted.is_empty(), "{:?}", out.unconverted);
        assert!(out.yaml.contains("# Everything was converted."));
        assert!(
            out.yaml
                .starts_with("# Converted from the AWS WAF web ACL `login-protection`")
        );

        let rules = rules_of(&out.yaml);
        // The API's base64 SearchString decoded; transformations sorted by priority.
        let Some(FileStatement::ByteMatch(b)) = &rule(&rules, "block-admin-path").statement else {
            panic!()
        };
        assert_eq!(b.value.as_deref(), Some("/admin"));
        assert_eq!(b.position, Position::StartsWith);
        let t: Vec<&str> = b.transforms.iter().map(|t| t.name()).collect();
        assert_eq!(t, ["url_decode", "lowercase"]);
        assert!(matches!(b.field, FileField::UriPath));

        let scanner = rule(&rules, "scanner-user-agent");
        assert!(matches!(scanner.action, Some(FileAction::Count)));
        assert_eq!(scanner.labels, ["scanner:user-agent"]);
        let Some(FileStatement::Or(alts)) = &scanner.statement else {
            panic!()
        };
        let FileStatement::ByteMatch(b) = &alts[0] else {
            panic!()
        };
        assert_eq!(b.value.as_deref(), Some("sqlmap"));
        assert!(matches!(&b.field, FileField::SingleHeader(h) if h == "user-agent"));
        assert!(matches!(&alts[1], FileStatement::Regex(_)));

        // The fully qualified label is matched by its local name.
        let labelled = rule(&rules, "block-labelled-scanners");
        assert!(matches!(labelled.action, Some(FileAction::Captcha)));
        let Some(FileStatement::And(parts)) = &labelled.statement else {
            panic!()
        };
        assert!(
            matches!(&parts[0], FileStatement::LabelMatch(l) if l.key.as_deref() == Some("scanner:user-agent"))
        );
        assert!(
            matches!(&parts[1], FileStatement::Not(g) if matches!(g.as_ref(), FileStatement::GeoMatch(g) if g.countries == ["US", "GB"]))
        );

        // Two JSON paths become an `or`; the custom body is resolved from CustomResponseBodies.
        let sqli = rule(&rules, "sqli-json-credentials");
        let Some(FileStatement::Or(alts)) = &sqli.statement else {
            panic!()
        };
        let pointers: Vec<&str> = alts
            .iter()
            .map(|s| match s {
                FileStatement::Sqli(i) => match &i.field {
                    FileField::JsonBody(j) => {
                        assert_eq!(j.part, Part::Values);
                        assert_eq!(j.oversize, crate::waf::file::Oversize::Match);
                        assert_eq!(i.sensitivity, crate::waf::injection::Sensitivity::High);
                        j.pointer.as_deref().unwrap()
                    }
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pointers, ["/username", "/email"]);
        let Some(FileAction::BlockWith(resp)) = &sqli.action else {
            panic!()
        };
        assert_eq!(resp.status, 400);
        assert_eq!(resp.body.as_deref(), Some("{\"error\":\"bad_request\"}"));
        assert_eq!(
            resp.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(resp.headers.get("x-blocked-by").map(String::as_str), Some("waf"));

        let Some(FileStatement::Or(alts)) = &rule(&rules, "xss-query-and-cookies").statement else {
            panic!()
        };
        let FileStatement::Xss(x) = &alts[1] else { panic!() };
        assert!(
            matches!(&x.field, FileField::Cookies(p) if p.part == Part::Values && p.exclude == ["session"])
        );
        assert!(x.transforms.is_empty());

        let Some(FileStatement::SizeConstraint(s)) = &rule(&rules, "oversize-body").statement else {
            panic!()
        };
        assert_eq!(s.size.0, 8192);
        assert!(matches!(&s.field, FileField::Body(b) if b.oversize == crate::waf::file::Oversize::Match));

        let asn = rule(&rules, "hosting-asns");
        assert!(matches!(asn.action, Some(FileAction::Challenge)));
        let Some(FileStatement::AsnMatch(a)) = &asn.statement else {
            panic!()
        };
        assert_eq!(a.asns, [16509, 14061]);
        assert!(
            matches!(&a.address, crate::waf::file::FileAddress::ForwardedIp(f) if f.header == "x-forwarded-for")
        );

        // Rate-based rule with custom keys, scope-down and a 429.
        let rate = rule(&rules, "login-rate-per-client");
        let Some(FileStatement::RateBased(r)) = &rate.statement else {
            panic!()
        };
        assert_eq!((r.limit, r.window.get().as_secs()), (100, 300));
        let keys: Vec<String> = r.keys.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(
            keys,
            [
                "Ip",
                "Header(\"x-api-key\")",
                "Cookie(\"device_id\")",
                "Method",
                "LabelNamespace(\"network:\")"
            ]
        );
        let Some(FileStatement::ByteMatch(scope)) = r.scope_down.as_deref() else {
            panic!()
        };
        assert_eq!(scope.value.as_deref(), Some("/api/login"));
        assert_eq!(scope.position, Position::Exactly);
        let Some(FileAction::BlockWith(resp)) = &rate.action else {
            panic!()
        };
        assert_eq!(
            (resp.status, resp.headers.get("retry-after").map(String::as_str)),
            (429, Some("300"))
        );

        let Some(FileStatement::RateBased(r)) = &rule(&rules, "forwarded-ip-rate").statement else {
            panic!()
        };
        assert_eq!(r.window.get().as_secs(), 3600);
        assert!(matches!(&r.keys[..], [FileRateKey::ForwardedIp(h)] if h == "x-forwarded-for"));
        assert!(out.yaml.contains("window: 1h"));

        let Some(FileStatement::And(parts)) = &rule(&rules, "header-probe").statement else {
            panic!()
        };
        assert!(matches!(&parts[0], FileStatement::ByteMatch(b) if b.value.as_deref() == Some("POST")));
        assert!(
            matches!(&parts[1], FileStatement::Regex(r) if matches!(&r.field, FileField::Headers(p) if p.part == Part::All))
        );
        assert!(
            matches!(&parts[2], FileStatement::SizeConstraint(s) if matches!(&s.field, FileField::SingleQueryArg(n) if n == "redirect"))
        );
    }

    #[test]
    fn rule_group_converts_into_a_group() {
        let out = aws_waf(&sample("rule-group.json")).unwrap();
        assert_eq!(out.unconverted, Vec::<String>::new());
        let main = format!(
            "{GEOIP}include: [group.yaml]\nweb_acl:\n  rules:\n    - {{name: stuffing, priority: 1, group: credential-stuffing}}\n"
        );
        let config = load(&main, &[("group.yaml", &out.yaml)])
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{}", out.yaml));
        let names: Vec<&str> = config.web_acl.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "stuffing/tag-sign-in",
                "stuffing/sign-in-rate-per-ip",
                "stuffing/sign-in-rate-global",
                "stuffing/blocked-countries",
                "stuffing/json-password-probe"
            ]
        );
        let file: FileConfig = parse_str(Path::new("group.yaml"), &out.yaml).unwrap();
        let acl = file.web_acl.unwrap().value;
        assert!(acl.default_action.is_none() && acl.rules.is_empty());
        assert_eq!(acl.groups[0].value.name, "credential-stuffing");
        assert_eq!(
            acl.groups[0].value.description.as_deref(),
            Some("Sign-in abuse limits")
        );
        let rules = rules_of(&out.yaml);
        // The API's base64 SearchString, decoded.
        let Some(FileStatement::And(parts)) = &rule(&rules, "tag-sign-in").statement else {
            panic!()
        };
        assert!(matches!(&parts[0], FileStatement::ByteMatch(b) if b.value.as_deref() == Some("POST")));
        assert!(
            matches!(&parts[1], FileStatement::ByteMatch(b) if b.value.as_deref() == Some("/login") && b.position == Position::EndsWith)
        );
        let Some(FileStatement::RateBased(r)) = &rule(&rules, "sign-in-rate-per-ip").statement else {
            panic!()
        };
        assert_eq!((r.limit, r.window.get().as_secs()), (20, 60));
        assert!(
            matches!(r.scope_down.as_deref(), Some(FileStatement::LabelMatch(l)) if l.key.as_deref() == Some("login:attempt"))
        );
        let Some(FileStatement::RateBased(r)) = &rule(&rules, "sign-in-rate-global").statement else {
            panic!()
        };
        assert!(matches!(&r.keys[..], [FileRateKey::Constant]));
        assert!(
            matches!(r.scope_down.as_deref(), Some(FileStatement::LabelMatch(l)) if l.namespace.as_deref() == Some("login:"))
        );
        let Some(FileStatement::GeoMatch(g)) = &rule(&rules, "blocked-countries").statement else {
            panic!()
        };
        assert!(matches!(&g.address, crate::waf::file::FileAddress::ForwardedIp(f) if f.fallback_match));
        let Some(FileStatement::ByteMatch(b)) = &rule(&rules, "json-password-probe").statement else {
            panic!()
        };
        assert_eq!(b.value.as_deref(), Some("<script>"));
        assert!(
            matches!(&b.field, FileField::JsonBody(j) if j.part == Part::All && j.pointer.is_none()
            && j.invalid == crate::waf::file::InvalidJson::NoMatch)
        );
    }

    #[test]
    fn unconvertible_parts_are_named_and_the_rest_loads() {
        let out = aws_waf(&sample("unconvertible.json")).unwrap();
        let config = load(&format!("{}{GEOIP}", out.yaml), &[])
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{}", out.yaml));
        let names: Vec<&str> = config.web_acl.rules().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["still-converted"]);
        assert!(config.web_acl.default_block().is_some());
        let expect = [
            (
                "aws-common",
                "ManagedRuleGroupStatement AWS/AWSManagedRulesCommonRuleSet",
            ),
            ("aws-common", "rules/common.yaml"),
            ("office-allow", "IPSetReferenceStatement"),
            ("bad-bots", "RegexPatternSetReferenceStatement (references an ARN"),
            (
                "challenge-bad-bots",
                "label `bot:bad`, which no earlier converted rule adds",
            ),
            ("shared-group", "rule group `credential-stuffing`"),
            ("md5-token", "text transformation MD5"),
            ("ja3-and-fragment", "JA3Fingerprint"),
            ("backreference-regex", "RegexMatchStatement pattern"),
            ("asn-rate", "aggregation key ASN"),
            ("bot-control-label", "AWS managed rule group"),
            ("still-converted", "Allow CustomRequestHandling"),
            ("still-converted", "CaptchaConfig"),
        ];
        for (rule, what) in expect {
            assert!(
                out.unconverted
                    .iter()
                    .any(|u| u.starts_with(&format!("rule `{rule}`:")) && u.contains(what)),
                "{rule}: {what} not in {:#?}",
                out.unconverted
            );
        }
        for setting in ["CaptchaConfig", "TokenDomains", "AssociationConfig"] {
            assert!(
                out.unconverted
                    .iter()
                    .any(|u| u.starts_with("web ACL setting") && u.contains(setting)),
                "{setting}"
            );
        }
        assert!(
            out.unconverted
                .iter()
                .any(|u| u.contains("custom response body `denied`"))
        );
        // Every unconverted item is listed in the header comment.
        for u in &out.unconverted {
            assert!(out.yaml.contains(&format!("#   - {}", one_line(u))), "{u}");
        }
        assert!(
            out.yaml
                .contains(&format!("# Not converted ({}):", out.unconverted.len()))
        );
    }

    #[test]
    fn known_group_references_become_group_rules() {
        let out = aws_waf_with_groups(
            &sample("unconvertible.json"),
            &["credential-stuffing".to_string()],
        )
        .unwrap();
        assert!(
            !out.unconverted
                .iter()
                .any(|u| u.starts_with("rule `shared-group`")),
            "{:?}",
            out.unconverted
        );
        let group = aws_waf(&sample("rule-group.json")).unwrap();
        let config = load(
            &format!("{}{GEOIP}include: [group.yaml]\n", out.yaml),
            &[("group.yaml", &group.yaml)],
        )
        .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{}", out.yaml));
        let r = config
            .web_acl
            .rules()
            .iter()
            .find(|r| r.name == "shared-group/blocked-countries")
            .unwrap();
        assert_eq!(r.action.name(), "count");
        let file: FileConfig = parse_str(Path::new("out.yaml"), &out.yaml).unwrap();
        let shared = file
            .web_acl
            .unwrap()
            .value
            .rules
            .into_iter()
            .find(|r| r.value.name == "shared-group")
            .unwrap()
            .value;
        assert_eq!(shared.group.as_deref(), Some("credential-stuffing"));
        assert!(matches!(shared.action, Some(FileAction::Count)));
        assert!(matches!(
            shared.rule_overrides.get("blocked-countries"),
            Some(FileAction::Count)
        ));
    }

    #[test]
    fn accepted_top_levels_and_errors() {
        // `x`: base64 in the API's JSON, plain text in CloudFormation.
        let rule = |search: &str| {
            format!(
                r#"{{"Name": "r", "Priority": 1, "Action": {{"Block": {{}}}},
            "Statement": {{"ByteMatchStatement": {{"SearchString": "{search}", "FieldToMatch": {{"QueryString": {{}}}},
            "TextTransformations": [{{"Priority": 0, "Type": "NONE"}}], "PositionalConstraint": "CONTAINS"}}}}}}"#
            )
        };
        let (api, cfn) = (rule("eA=="), rule("x"));
        for doc in [
            format!("[{api}]"),
            format!(r#"{{"Rules": [{api}]}}"#),
            format!(r#"{{"Name": "acl", "DefaultAction": {{"Allow": {{}}}}, "Rules": [{api}]}}"#),
            format!(
                r#"{{"Type": "AWS::WAFv2::WebACL", "Properties": {{"DefaultAction": {{"Block": {{}}}}, "Rules": [{cfn}]}}}}"#
            ),
        ] {
            let out = aws_waf(&doc).unwrap();
            assert!(out.unconverted.is_empty(), "{doc}: {:?}", out.unconverted);
            let config = load(&out.yaml, &[]).unwrap_or_else(|e| panic!("{e}\n{}", out.yaml));
            assert_eq!(config.web_acl.rules().len(), 1, "{doc}");
            let rules = rules_of(&out.yaml);
            assert!(
                matches!(&rules[0].statement, Some(FileStatement::ByteMatch(b)) if b.value.as_deref() == Some("x")),
                "{doc}"
            );
        }
        let rule = api;
        let out = aws_waf(&format!(r#"{{"Name": "g", "Capacity": 5, "Rules": [{rule}]}}"#)).unwrap();
        assert!(out.yaml.contains("groups:"));
        assert!(matches!(aws_waf("{not json"), Err(ImportError::Json(_))));
        assert!(matches!(
            aws_waf(r#"{"Foo": 1}"#),
            Err(ImportError::Unrecognized(_))
        ));
        assert!(matches!(aws_waf("42"), Err(ImportError::Unrecognized(_))));
    }

    #[test]
    fn every_aws_transformation_maps() {
        let aws = [
            "BASE64_DECODE",
            "BASE64_DECODE_EXT",
            "CMD_LINE",
            "COMPRESS_WHITE_SPACE",
            "CSS_DECODE",
            "ESCAPE_SEQ_DECODE",
            "HEX_DECODE",
            "HTML_ENTITY_DECODE",
            "JS_DECODE",
            "LOWERCASE",
            "NORMALIZE_PATH",
            "NORMALIZE_PATH_WIN",
            "REMOVE_NULLS",
            "REPLACE_COMMENTS",
            "REPLACE_NULLS",
            "SQL_HEX_DECODE",
            "URL_DECODE",
            "URL_DECODE_UNI",
            "UTF8_TO_UNICODE",
        ];
        for t in aws {
            let v = serde_json::json!({"TextTransformations": [{"Priority": 0, "Type": t}]});
            let got = transforms(&v).unwrap();
            assert!(
                matches!(&got[..], [Node::Str(s)] if *s == t.to_ascii_lowercase()),
                "{t}"
            );
        }
        assert!(
            transforms(&serde_json::json!({"TextTransformations": [{"Priority": 0, "Type": "MD5"}]}))
                .is_err()
        );
    }

    #[test]
    fn quoting_survives_the_round_trip() {
        let doc = r##"[{"Name": "odd", "Priority": 1, "Action": {"Block": {"CustomResponse": {"ResponseCode": 403,
            "ResponseHeaders": [{"Name": "X-Reason", "Value": "a, b: {c} #d"}]}}},
            "RuleLabels": [{"Name": "ns:yes"}, {"Name": "123"}],
            "Statement": {"OrStatement": {"Statements": [
              {"ByteMatchStatement": {"SearchString": "JyBPUiAxPTEgLS0gIw==", "FieldToMatch": {"SingleHeader": {"Name": "X-Y"}},
               "TextTransformations": [], "PositionalConstraint": "CONTAINS"}},
              {"ByteMatchStatement": {"SearchString": "bnVsbA==", "FieldToMatch": {"SingleQueryArgument": {"Name": "on"}},
               "TextTransformations": [], "PositionalConstraint": "EXACTLY"}},
              {"RegexMatchStatement": {"RegexString": "^\\s*[{}\\[\\]]: \"x\" #", "FieldToMatch": {"QueryString": {}},
               "TextTransformations": []}}]}}}]"##;
        let out = aws_waf(doc).unwrap();
        let rules = rules_of(&out.yaml);
        assert_eq!(rules[0].labels, ["ns:yes", "123"]);
        let Some(FileAction::BlockWith(b)) = &rules[0].action else {
            panic!()
        };
        assert_eq!(
            b.headers.get("x-reason").map(String::as_str),
            Some("a, b: {c} #d")
        );
        let Some(FileStatement::Or(alts)) = &rules[0].statement else {
            panic!()
        };
        assert!(
            matches!(&alts[0], FileStatement::ByteMatch(b) if b.value.as_deref() == Some("' OR 1=1 -- #"))
        );
        assert!(
            matches!(&alts[1], FileStatement::ByteMatch(b) if b.value.as_deref() == Some("null")
            && matches!(&b.field, FileField::SingleQueryArg(n) if n == "on"))
        );
        assert!(
            matches!(&alts[2], FileStatement::Regex(r) if r.pattern.as_str() == "^\\s*[{}\\[\\]]: \"x\" #")
        );
        load(&out.yaml, &[]).unwrap();
    }

    /// The documented workflow: `authward import aws-waf acl.json > inc/acl1.yaml`, then
    /// `include: [inc/acl1.yaml]`. The imported default action must agree with the main config's.
    #[test]
    fn an_imported_web_acl_can_be_included() {
        let out = aws_waf(&sample("web-acl.json")).unwrap();
        assert!(out.yaml.contains("# Include it from your config"));
        let main = format!("{GEOIP}include: [inc/acl1.yaml]\n");
        let config = load(&main, &[("inc/acl1.yaml", &out.yaml)])
            .unwrap_or_else(|e| panic!("{e}\n--- yaml ---\n{}", out.yaml));
        assert_eq!(config.web_acl.rules().len(), 10);
        assert!(config.web_acl.default_block().is_none());
        // A web ACL that blocks by default: the main config must say so too.
        let out = aws_waf(&sample("unconvertible.json")).unwrap();
        let e = load(&main, &[("inc/acl1.yaml", &out.yaml)])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("differs from the main config's default action"), "{e}");
        let default = out
            .yaml
            .lines()
            .skip_while(|l| !l.starts_with("  default_action:"))
            .take_while(|l| l.starts_with("  default_action:") || l.starts_with("    "))
            .collect::<Vec<_>>()
            .join("\n");
        let main = format!("{main}web_acl:\n{default}\n");
        let config = load(&main, &[("inc/acl1.yaml", &out.yaml)])
            .unwrap_or_else(|e| panic!("{e}\n--- main ---\n{main}\n--- yaml ---\n{}", out.yaml));
        assert!(config.web_acl.default_block().is_some());
    }

    /// `SearchString` is base64 in every shape of the API's JSON, the bare `WebACL` too; control
    /// characters survive the YAML; a value that is not base64 text leaves its rule out, reported.
    #[test]
    fn search_strings_decode_in_every_api_shape() {
        let full = std::fs::read_to_string(repo("tests/aws-waf/web-acl.json")).unwrap();
        let doc: Value = serde_json::from_str(&full).unwrap();
        for json in [
            full.clone(),
            doc["WebACL"].to_string(),
            doc["WebACL"]["Rules"].to_string(),
        ] {
            let out = aws_waf(&json).unwrap();
            assert!(!out.yaml.contains("L2FkbWlu"), "{}", out.yaml);
            let rules = rules_of(&out.yaml);
            let Some(FileStatement::ByteMatch(b)) = &rule(&rules, "block-admin-path").statement else {
                panic!()
            };
            assert_eq!(b.value.as_deref(), Some("/admin"));
        }
        let byte_match = |search: &str| {
            format!(
                r#"[{{"Name": "r", "Priority": 1, "Action": {{"Block": {{}}}},
                "Statement": {{"ByteMatchStatement": {{"SearchString": "{search}", "FieldToMatch": {{"Body": {{}}}},
                "TextTransformations": [], "PositionalConstraint": "CONTAINS"}}}}}}]"#
            )
        };
        // CRLF (header injection probes): kept, escaped in the YAML, and it loads.
        let out = aws_waf(&byte_match("DQo=")).unwrap();
        assert!(out.unconverted.is_empty(), "{:?}", out.unconverted);
        assert!(out.yaml.contains(r#""\r\n""#), "{}", out.yaml);
        let rules = rules_of(&out.yaml);
        assert!(
            matches!(&rules[0].statement, Some(FileStatement::ByteMatch(b)) if b.value.as_deref() == Some("\r\n"))
        );
        load(&out.yaml, &[]).unwrap();
        // Not base64, or not text once decoded: the rule is left out and reported, never kept literal.
        for (search, why) in [("/login", "is not base64"), ("//79", "not UTF-8 text")] {
            let out = aws_waf(&byte_match(search)).unwrap();
            assert!(
                out.unconverted.len() == 1 && out.unconverted[0].contains(why),
                "{search}: {:?}",
                out.unconverted
            );
            assert!(!out.yaml.contains("# Everything was converted."));
            assert!(rules_of(&out.yaml).is_empty());
        }
        // CloudFormation's SearchString is text; its SearchStringBase64 is decoded.
        let cfn = |statement: &str| {
            format!(
                r#"{{"Type": "AWS::WAFv2::RuleGroup", "Properties": {{"Name": "g", "Rules": [{{"Name": "r", "Priority": 1,
                "Action": {{"Block": {{}}}}, "Statement": {{"ByteMatchStatement": {{{statement}, "FieldToMatch": {{"Body": {{}}}},
                "TextTransformations": [], "PositionalConstraint": "CONTAINS"}}}}}}]}}}}"#
            )
        };
        for (statement, want) in [
            (r#""SearchString": "L2FkbWlu""#, "L2FkbWlu"),
            (r#""SearchStringBase64": "DQo=""#, "\r\n"),
        ] {
            let out = aws_waf(&cfn(statement)).unwrap();
            assert!(out.unconverted.is_empty(), "{:?}", out.unconverted);
            let acl = load(&out.yaml, &[]).unwrap();
            assert_eq!(acl.web_acl.rules().len(), 0, "an unreferenced group");
            assert!(
                out.yaml.contains(&format!("{want:?}")) || out.yaml.contains(want),
                "{}",
                out.yaml
            );
        }
    }

    // === docs/rules.md ===

    /// The ```yaml blocks of the guide that hold `web_acl:` (and no `# fragment` mark), with their line.
    fn guide_examples(text: &str) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut current: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            match &mut current {
                None if trimmed.starts_with("```yaml") => current = Some((i + 1, String::new())),
                None => {}
                Some(_) if trimmed.starts_with("```") => {
                    if let Some((at, block)) = current.take() {
                        if block.contains("web_acl:") && !block.contains("# fragment") {
                            out.push((at, block));
                        }
                    }
                }
                Some((_, block)) => {
                    block.push_str(line);
                    block.push('\n');
                }
            }
        }
        out
    }

    #[test]
    fn every_guide_example_loads_and_compiles() {
        let text = std::fs::read_to_string(repo("docs/rules.md")).unwrap();
        let examples = guide_examples(&text);
        assert!(examples.len() >= 20, "only {} examples found", examples.len());
        let mut failures = Vec::new();
        for (line, block) in &examples {
            if let Err(e) = load(block, &[]) {
                failures.push(format!("docs/rules.md:{line}: {e}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
