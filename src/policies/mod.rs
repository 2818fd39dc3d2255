//! Security best practices enforced at the edge: sign-up, app clients, secrets, PKCE, attributes, passwords.

pub mod attributes;
pub mod clients;
pub mod file;
pub mod oauth;
pub mod passwords;
pub mod respond;
pub mod signup;
pub mod stage;

use std::collections::HashMap;
use std::time::Duration;

use file::{Dialect, FilePolicyGroup, Mode, Policy};

use crate::config::Sources;
use crate::waf::ipset::IpSet;

/// Why the `policies` section did not compile: the group (by name), the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policies.{group}.{path}: {message}")]
pub struct PolicyError {
    pub group: String,
    pub path: String,
    pub message: String,
}

/// Whether the config is served (every reference must resolve) or a rule file checked on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// `serve`: secrets, clients and the compromised-password filter must be there.
    Serve,
    /// `check` of a rule file: what another file supplies may be missing.
    Check,
}

/// The compiled `policies` section: groups in order.
#[derive(Debug, Default)]
pub struct Policies {
    groups: Vec<Group>,
}

/// One compiled group.
#[derive(Debug)]
pub struct Group {
    pub name: String,
    profiles: Vec<glob::Pattern>,
    pub respond_as: Dialect,
    modes: HashMap<Policy, Mode>,
    pub sign_up: signup::SignUp,
    pub admin: signup::Admin,
    pub pkce_remember: Duration,
    pub default_grants: Vec<String>,
    pub attributes: attributes::Rules,
    pub min_score: u8,
    pub reuse: passwords::HistoryParams,
    pub clients: HashMap<String, clients::Client>,
}

impl Policies {
    /// Merges groups of one name (later entries win, key by key) and compiles them. `has_breach_filter`
    /// tells whether `risk.compromised_credentials.filter` is set.
    pub fn compile(
        entries: Vec<FilePolicyGroup>,
        strictness: Strictness,
        has_breach_filter: bool,
        sources: &dyn Sources,
    ) -> Result<Policies, PolicyError> {
        let mut merged: Vec<FilePolicyGroup> = Vec::new();
        for e in entries {
            match merged.iter_mut().find(|g| g.name == e.name) {
                Some(g) => merge(g, e),
                None => merged.push(e),
            }
        }
        let groups = merged
            .iter()
            .map(|g| Group::compile(g, strictness, has_breach_filter, sources).map_err(|e| e.at(&g.name)))
            .collect::<Result<_, _>>()?;
        Ok(Policies { groups })
    }

    /// The first group that covers the profile.
    pub fn group_for(&self, profile: &str) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.profiles.iter().any(|p| p.matches(profile)))
    }

    /// Whether no group is configured.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

/// Replaces every key of `into` that `from` sets.
fn merge(into: &mut FilePolicyGroup, from: FilePolicyGroup) {
    macro_rules! take {
        ($($k:ident),*) => {$( if from.$k.is_some() { into.$k = from.$k; } )*};
    }
    take!(
        profiles,
        respond_as,
        sign_up,
        admin,
        client_allowlist,
        secret_hash,
        pkce,
        grant_types,
        scopes,
        attributes,
        password_strength,
        password_reuse,
        compromised_password,
        clients
    );
}

/// A compile error before its group index is known.
struct Invalid {
    path: String,
    message: String,
}

impl Invalid {
    fn at(self, group: &str) -> PolicyError {
        PolicyError {
            group: group.to_string(),
            path: self.path,
            message: self.message,
        }
    }
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.into(),
        message: message.into(),
    }
}

fn globs(list: &[String], path: &str) -> Result<Vec<glob::Pattern>, Invalid> {
    list.iter()
        .enumerate()
        .map(|(i, g)| {
            glob::Pattern::new(g)
                .map_err(|e| invalid(format!("{path}[{i}]"), format!("invalid glob: {}", e.msg)))
        })
        .collect()
}

fn ranges(list: &[crate::config::types::Cidr]) -> IpSet {
    IpSet::new(list.iter().map(|c| c.0))
}

impl Group {
    fn compile(
        f: &FilePolicyGroup,
        strictness: Strictness,
        has_breach_filter: bool,
        sources: &dyn Sources,
    ) -> Result<Group, Invalid> {
        let name_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if f.name.is_empty() || f.name.len() > 64 || !f.name.chars().all(name_ok) {
            return Err(invalid("name", "use 1 to 64 of a-z, 0-9, _ and -"));
        }
        let profiles = match &f.profiles {
            Some(p) if !p.is_empty() => globs(p, "profiles")?,
            _ => {
                return Err(invalid(
                    "profiles",
                    "name at least one profile (a name or a glob)",
                ));
            }
        };
        let mut modes = HashMap::new();
        let mut set = |p: Policy, m: Option<Mode>| {
            modes.insert(p, m.unwrap_or_default());
        };
        set(Policy::SignUp, f.sign_up.as_ref().map(|s| s.mode));
        set(Policy::Admin, f.admin.as_ref().map(|s| s.mode));
        set(
            Policy::ClientAllowlist,
            f.client_allowlist.as_ref().map(|s| s.mode),
        );
        set(Policy::SecretHash, f.secret_hash.as_ref().map(|s| s.mode));
        set(Policy::Pkce, f.pkce.as_ref().map(|s| s.mode));
        set(Policy::GrantTypes, f.grant_types.as_ref().map(|s| s.mode));
        set(Policy::Scopes, f.scopes.as_ref().map(|s| s.mode));
        set(Policy::Attributes, f.attributes.as_ref().map(|s| s.mode));
        set(
            Policy::PasswordStrength,
            f.password_strength.as_ref().map(|s| s.mode),
        );
        set(Policy::PasswordReuse, f.password_reuse.as_ref().map(|s| s.mode));
        set(
            Policy::CompromisedPassword,
            f.compromised_password.as_ref().map(|s| s.mode),
        );

        let sign_up = signup::SignUp::compile(f.sign_up.as_ref().cloned().unwrap_or_default());
        let admin = match &f.admin {
            Some(a) => signup::Admin {
                profiles: globs(&a.profiles, "admin.profiles")?,
                grants: a
                    .grants
                    .clone()
                    .unwrap_or_else(|| vec!["client_credentials".into()]),
                ranges: ranges(&a.ranges),
            },
            None => signup::Admin::default(),
        };
        let pkce_remember = f
            .pkce
            .as_ref()
            .and_then(|p| p.remember)
            .map_or(Duration::from_secs(24 * 3600), |d| d.get());
        if pkce_remember.is_zero() {
            return Err(invalid("pkce.remember", "must be longer than zero"));
        }
        let default_grants = f
            .grant_types
            .as_ref()
            .and_then(|g| g.allowed.clone())
            .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
        let attributes = attributes::Rules::compile(f.attributes.as_ref())?;
        let min_score = f
            .password_strength
            .as_ref()
            .and_then(|p| p.min_score)
            .unwrap_or(3);
        if min_score > 4 {
            return Err(invalid("password_strength.min_score", "a zxcvbn score is 0 to 4"));
        }
        let reuse = passwords::HistoryParams::compile(f.password_reuse.as_ref())?;
        let mut clients = HashMap::new();
        for (id, c) in f.clients.iter().flatten() {
            clients.insert(id.clone(), clients::Client::compile(id, c, strictness, sources)?);
        }
        let group = Group {
            name: f.name.clone(),
            profiles,
            respond_as: f.respond_as.unwrap_or_default(),
            modes,
            sign_up,
            admin,
            pkce_remember,
            default_grants,
            attributes,
            min_score,
            reuse,
            clients,
        };
        if strictness == Strictness::Serve {
            if group.mode(Policy::CompromisedPassword, None) != Mode::Off && !has_breach_filter {
                return Err(invalid(
                    "compromised_password",
                    "needs the compromised-password filter: set risk.compromised_credentials.filter",
                ));
            }
            if group.mode(Policy::ClientAllowlist, None) != Mode::Off && group.clients.is_empty() {
                return Err(invalid(
                    "client_allowlist",
                    "list the allowed app clients under `clients` (every client would be refused)",
                ));
            }
        }
        Ok(group)
    }

    /// The mode of a policy for a client: the client's own, or the group's.
    pub fn mode(&self, policy: Policy, client_id: Option<&str>) -> Mode {
        client_id
            .and_then(|c| self.clients.get(c))
            .and_then(|c| c.modes.get(&policy).copied())
            .or_else(|| self.modes.get(&policy).copied())
            .unwrap_or_default()
    }

    /// Whether any policy could act for this client.
    pub fn any_on(&self, client_id: Option<&str>) -> bool {
        Policy::ALL.iter().any(|p| self.mode(*p, client_id) != Mode::Off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmbeddedSources;

    fn compile(yaml: &str, strictness: Strictness) -> Result<Policies, PolicyError> {
        let groups: Vec<FilePolicyGroup> = serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
        let mut env = EmbeddedSources::default();
        env.env.insert("WEB_SECRET".into(), "s3cr3t".into());
        Policies::compile(groups, strictness, false, &env)
    }

    #[test]
    fn groups_of_one_name_merge_key_by_key() {
        let p = compile(
            "- {name: cognito, profiles: [cognito-*], sign_up: {mode: enforce}, pkce: {mode: audit}}\n\
             - {name: cognito, pkce: {mode: enforce}, clients: {abc: {secret_env: WEB_SECRET}}}\n",
            Strictness::Serve,
        )
        .unwrap();
        let g = p.group_for("cognito-sign-up").unwrap();
        assert_eq!(g.mode(Policy::SignUp, None), Mode::Enforce);
        assert_eq!(g.mode(Policy::Pkce, None), Mode::Enforce);
        assert!(g.clients["abc"].secret.is_some());
        assert!(p.group_for("json-login").is_none());
    }

    #[test]
    fn client_modes_replace_the_group_modes() {
        let p = compile(
            "- {name: g, profiles: ['*'], pkce: {mode: enforce}, clients: {spa: {modes: {pkce: audit}}, web: {}}}\n",
            Strictness::Serve,
        )
        .unwrap();
        let g = p.group_for("x").unwrap();
        assert_eq!(g.mode(Policy::Pkce, Some("spa")), Mode::Audit);
        assert_eq!(g.mode(Policy::Pkce, Some("web")), Mode::Enforce);
        assert_eq!(g.mode(Policy::Pkce, None), Mode::Enforce);
        assert_eq!(g.mode(Policy::Scopes, Some("spa")), Mode::Off);
    }

    #[test]
    fn what_serving_needs_is_checked_only_when_serving() {
        let allowlist = "- {name: g, profiles: ['*'], client_allowlist: {mode: enforce}}\n";
        let e = compile(allowlist, Strictness::Serve).unwrap_err();
        assert_eq!(e.path, "client_allowlist");
        compile(allowlist, Strictness::Check).unwrap();
        let breach = "- {name: g, profiles: ['*'], compromised_password: {mode: audit}}\n";
        let e = compile(breach, Strictness::Serve).unwrap_err();
        assert!(e.message.contains("risk.compromised_credentials.filter"), "{e}");
        let missing = "- {name: g, profiles: ['*'], clients: {c: {secret_env: NOT_SET_ANYWHERE}}}\n";
        let e = compile(missing, Strictness::Serve).unwrap_err();
        assert_eq!(
            e.to_string(),
            "policies.g.clients.c.secret_env: environment variable `NOT_SET_ANYWHERE` is not set"
        );
        compile(missing, Strictness::Check).unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        for (yaml, path) in [
            ("- {name: g}\n", "profiles"),
            ("- {name: G, profiles: [a]}\n", "name"),
            (
                "- {name: g, profiles: [a], password_strength: {min_score: 5}}\n",
                "password_strength.min_score",
            ),
            (
                "- {name: g, profiles: [a], password_reuse: {remember: 25}}\n",
                "password_reuse.remember",
            ),
            ("- {name: g, profiles: ['[']}\n", "profiles[0]"),
        ] {
            let e = compile(yaml, Strictness::Check).unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e}");
        }
    }
}
