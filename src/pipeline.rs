//! The ordered list of stages and the per-request [`Exchange`] they share.
//!
//! ```text
//! client ─▶ listener ─▶ 1 context ─▶ 2 profile ─▶ [3 web ACL ─▶ 4 SMS guard ─▶ 5 risk (pre)]
//!                                        │413                  later issues; each may answer early
//!                                        ▼
//!            6 forward (proxy::upstream) ─▶ 7 outcome ─▶ [8 risk (post) ─▶ 9 rewrite] ─▶ 10 record
//! ```
//! 1 is built by the proxy into [`Exchange::ctx`] before any stage runs, and 10 (access log, metrics) is
//! done by the proxy after the last stage, so that every request is recorded, including refused ones.
//! In between, each [`Stage`] gets a request hook, run in order until one answers, and a response hook,
//! run in order on whatever answer came back (the upstream's, or the one a stage made). Adding a stage
//! touches its own module, its variant in the `staged!` list and its line in [`Pipeline::new`].

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::context::Context;
use crate::events;
use crate::metrics::Metrics;
use crate::profile::{self, Outcome};
use crate::proxy::body::Body;
use crate::proxy::upstream::Upstream;
use crate::store::Store;
use crate::{sms, waf};

/// The long-lived services that stages are built with; one set per process, shared by every config.
#[derive(Clone)]
pub struct Services {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
}

/// What a request hook decided.
pub enum Flow {
    /// Go on to the next stage, then the upstream.
    Continue,
    /// Answer the client with this response; the upstream never sees the request.
    Respond(Response<Body>),
}

/// The request body as the stages see it.
pub enum RequestBody {
    /// Not read: it will stream to the upstream as it arrives.
    Streaming(Body),
    /// Read whole (profiled routes), within the body cap.
    Buffered(bytes::Bytes),
}

impl RequestBody {
    /// Whether there is no body at all (none announced, or a buffered one of no bytes).
    pub fn is_empty(&self) -> bool {
        match self {
            RequestBody::Streaming(b) => http_body::Body::is_end_stream(b),
            RequestBody::Buffered(b) => b.is_empty(),
        }
    }
}

/// What the upstream did with the request.
#[derive(Debug, Default, Clone)]
pub struct UpstreamReport {
    /// The upstream's status, when it answered.
    pub status: Option<StatusCode>,
    /// Time to the response head.
    pub duration: Option<Duration>,
    /// Why there was no answer (`connect`, `timeout`, `protocol`).
    pub error: Option<&'static str>,
}

/// One request's state, shared by every stage.
pub struct Exchange {
    /// The config this request started with; a reload does not change it mid-flight.
    pub config: Arc<Config>,
    pub ctx: Context,
    /// The request head, as it will be forwarded (client `x-authward-*` headers already removed).
    pub request: http::request::Parts,
    pub body: RequestBody,
    /// The profile this request matched, with the fields pulled out of it.
    pub profile: Option<profile::Matched>,
    /// Labels added by stages.
    pub labels: Vec<String>,
    /// What the web ACL decided.
    pub waf: Option<crate::waf::Verdict>,
    /// What the SMS guard decided, for a guarded send.
    pub sms: Option<crate::sms::Verdict>,
    /// The upstream's answer, classified by the matched profile.
    pub outcome: Option<Outcome>,
    /// Why a stage refused the request, for the access log and metrics.
    pub rejected: Option<&'static str>,
    pub upstream: UpstreamReport,
    /// The risk engine's assessment of this request, from its request hook to its response hook.
    pub risk: Option<Box<crate::risk::stage::Assessed>>,
    /// Auth events made by the stages, recorded (history, sinks, notifications) once the answer is sent.
    pub events: Vec<events::Pending>,
    /// What the policies stage's request hook leaves for its response hook.
    pub policies: Option<Box<crate::policies::stage::Carried>>,
}

impl Exchange {
    /// A request's state before any stage has run: no profile, labels, verdicts, outcome or events.
    pub fn new(
        config: Arc<Config>,
        ctx: Context,
        request: http::request::Parts,
        body: RequestBody,
    ) -> Exchange {
        Exchange {
            config,
            ctx,
            request,
            body,
            profile: None,
            labels: Vec::new(),
            waf: None,
            sms: None,
            outcome: None,
            rejected: None,
            upstream: UpstreamReport::default(),
            risk: None,
            events: Vec::new(),
            policies: None,
        }
    }

    /// The operation name for logs and metric labels: the profile's, or `none`.
    pub fn operation(&self) -> &'static str {
        self.profile
            .as_ref()
            .map_or("none", |m| m.profile.operation().as_str())
    }
}

/// Which of a stage's hooks the pipeline calls, and for which requests. Each call of a hook costs a
/// dispatch and a move of its future's state, so a stage declares the hooks it has (none when its
/// config leaves it nothing to do), and whether it acts only on requests that matched a profile (the
/// others then pay for none of its hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    pub request: bool,
    pub response: bool,
    pub profiled_only: bool,
}

impl Hooks {
    pub const BOTH: Hooks = Hooks::new(true, true);
    pub const REQUEST: Hooks = Hooks::new(true, false);
    pub const RESPONSE: Hooks = Hooks::new(false, true);
    pub const NONE: Hooks = Hooks::new(false, false);

    const fn new(request: bool, response: bool) -> Hooks {
        Hooks {
            request,
            response,
            profiled_only: false,
        }
    }

    /// The same hooks, for profiled requests only.
    pub const fn profiled(self) -> Hooks {
        Hooks {
            profiled_only: true,
            ..self
        }
    }
}

/// One step of the request flow. The pipeline calls its hooks through `Staged`, by static dispatch:
/// their futures live inside the request's own future rather than in a box each.
pub trait Stage: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// The hooks this stage has; asked once, when the pipeline is built for a config.
    fn hooks(&self) -> Hooks {
        Hooks::BOTH
    }
    /// Runs before the upstream sees the request.
    fn on_request(&self, _ex: &mut Exchange) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }
    /// Runs on the answer; may read it or replace it.
    fn on_response(
        &self,
        _ex: &mut Exchange,
        _response: &mut Response<Body>,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Declares [`Staged`], one variant per stage type, and its dispatch to each variant's [`Stage`] hooks.
macro_rules! staged {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// Any of the stages, so that the pipeline reaches each stage's hooks without a virtual call and
        /// without boxing their futures (a boxed future is an allocation and a copy of its whole state,
        /// several hundred bytes for the larger hooks, on every call).
        enum Staged {
            $($variant($ty),)+
        }

        $(impl From<$ty> for Staged {
            fn from(stage: $ty) -> Self {
                Staged::$variant(stage)
            }
        })+

        impl Staged {
            fn name(&self) -> &'static str {
                match self {
                    $(Staged::$variant(s) => s.name(),)+
                }
            }

            fn hooks(&self) -> Hooks {
                match self {
                    $(Staged::$variant(s) => s.hooks(),)+
                }
            }

            async fn on_request(&self, ex: &mut Exchange) -> Flow {
                match self {
                    $(Staged::$variant(s) => s.on_request(ex).await,)+
                }
            }

            async fn on_response(&self, ex: &mut Exchange, response: &mut Response<Body>) {
                match self {
                    $(Staged::$variant(s) => s.on_response(ex, response).await,)+
                }
            }
        }
    };
}

staged! {
    Recognize(profile::stage::Recognize),
    Inspect(waf::stage::Inspect),
    Classify(profile::stage::Classify),
    CountFailures(waf::stage::CountFailures),
    Enforce(crate::policies::stage::Enforce),
    Guard(sms::stage::Guard),
    Settle(sms::stage::Settle),
    Risk(crate::risk::stage::RiskStage),
    Rewrite(crate::mfa::stage::Rewrite),
}

/// The stages in order.
pub struct Pipeline {
    stages: Vec<Staged>,
    /// Indices of the stages whose request hook runs, in order, each with whether it is profiled-only.
    on_request: Vec<(usize, bool)>,
    /// The same for response hooks.
    on_response: Vec<(usize, bool)>,
}

impl Pipeline {
    /// Builds the stages for one compiled config.
    pub fn new(config: &Arc<Config>, services: &Services) -> Self {
        let Services { metrics, store, .. } = services;
        let sms = || config.sms.clone();
        let stages: Vec<Staged> = vec![
            Staged::from(profile::stage::Recognize::new(config.profiles.clone())), // 2
            Staged::from(waf::stage::Inspect::new(
                config.web_acl.clone(),
                store.clone(),
                metrics.clone(),
            )), // 3
            // Stages with only a response hook (7, 7b) may sit anywhere before those that need the outcome;
            // a stage with both hooks sits after 7 so that its response hook sees the outcome.
            Staged::from(profile::stage::Classify::new(metrics.clone())), // 7
            Staged::from(waf::stage::CountFailures::new(
                config.web_acl.clone(),
                store.clone(),
            )), // 7b
            Staged::from(crate::policies::stage::Enforce::new(config, services)), // 3b, and on the answer
            Staged::from(sms::stage::Guard::new(sms(), services)),        // 4
            Staged::from(sms::stage::Settle::new(sms(), services)),       // 7c
            Staged::from(crate::risk::stage::RiskStage::new(config.risk.clone(), services)), // 5 and 8
            Staged::from(crate::mfa::stage::Rewrite::new(config.mfa.clone(), services)), // 9
        ];
        let hooked = |has: fn(Hooks) -> bool| {
            stages
                .iter()
                .enumerate()
                .map(|(i, s)| (i, s.hooks()))
                .filter(|&(_, h)| has(h))
                .map(|(i, h)| (i, h.profiled_only))
                .collect()
        };
        let (on_request, on_response) = (hooked(|h| h.request), hooked(|h| h.response));
        Pipeline {
            stages,
            on_request,
            on_response,
        }
    }

    /// The stage names in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    /// Runs one request through every stage and the upstream.
    pub async fn run(&self, ex: &mut Exchange, upstream: &Upstream) -> Response<Body> {
        let mut response = None;
        for &(i, profiled_only) in &self.on_request {
            if profiled_only && ex.profile.is_none() {
                continue;
            }
            if let Flow::Respond(r) = self.stages[i].on_request(ex).await {
                response = Some(r);
                break;
            }
        }
        let mut response = match response {
            Some(r) => r,
            None => upstream.forward(ex).await,
        };
        for &(i, profiled_only) in &self.on_response {
            if profiled_only && ex.profile.is_none() {
                continue;
            }
            self.stages[i].on_response(ex, &mut response).await;
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{EmbeddedSources, Mode, load_from};
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn pipeline(yaml: &str) -> Pipeline {
        let mut files = EmbeddedSources::default();
        files
            .files
            .insert(PathBuf::from("c.yaml"), yaml.as_bytes().to_vec());
        files.files.insert(
            PathBuf::from("json-login.yaml"),
            include_bytes!("../rules/profiles/json-login.yaml").to_vec(),
        );
        let config =
            Arc::new(load_from(Path::new("c.yaml"), Mode::Serve, &files).unwrap_or_else(|e| panic!("{e}")));
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let services = Services {
            metrics: Arc::new(Metrics::new()),
            store: Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone())),
            clock,
        };
        Pipeline::new(&config, &services)
    }

    /// The names of the stages whose hooks run for an unprofiled request: (request, response).
    fn unprofiled(p: &Pipeline) -> (Vec<&'static str>, Vec<&'static str>) {
        let names = |hooked: &[(usize, bool)]| {
            hooked
                .iter()
                .filter(|(_, profiled_only)| !profiled_only)
                .map(|&(i, _)| p.stages[i].name())
                .collect()
        };
        (names(&p.on_request), names(&p.on_response))
    }

    #[test]
    fn a_bare_proxy_calls_no_hook_on_unprofiled_requests() {
        let p = pipeline("upstream: {url: 'http://127.0.0.1:9'}\n");
        assert_eq!(unprofiled(&p), (vec![], vec![]));
    }

    #[test]
    fn stages_are_called_only_for_the_hooks_they_have() {
        let p = pipeline(
            "upstream: {url: 'http://127.0.0.1:9'}\ninclude: [json-login.yaml]\nweb_acl:\n  rules:\n    - name: \
             ua\n      priority: 1\n      action: block\n      statement:\n        byte_match: {field: \
             {single_header: user-agent}, position: contains, values: [sqlmap]}\n",
        );
        assert_eq!(unprofiled(&p), (vec!["profile", "web_acl"], vec![]));
        let names = |hooked: &[(usize, bool)]| {
            hooked
                .iter()
                .map(|&(i, _)| p.stages[i].name())
                .collect::<Vec<_>>()
        };
        let (request, response) = (names(&p.on_request), names(&p.on_response));
        // Stages with one hook; and without `policies` or `mfa` sections, those stages ask for nothing
        // before the upstream.
        assert!(
            !request.contains(&"outcome") && response.contains(&"outcome"),
            "{request:?} {response:?}"
        );
        assert!(request.contains(&"web_acl") && !response.contains(&"web_acl"));
        assert!(!request.contains(&"policies") && !response.contains(&"policies"));
        assert!(!request.contains(&"rewrite") && response.contains(&"rewrite"));
        assert!(request.contains(&"risk") && response.contains(&"risk"));
        assert_eq!(p.names().len(), p.stages.len());
    }
}
