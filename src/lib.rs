//! authward: a threat-protection reverse proxy for sign-in traffic.
//!
//! See `docs/` and DESIGN.md for the request flow; [`pipeline`] lists the stages in order.

pub mod admin;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod context;
pub mod demo;
pub mod events;
pub mod form;
pub mod geo;
pub mod metrics;
pub mod mfa;
pub mod pipeline;
pub mod policies;
pub mod profile;
pub mod proxy;
pub mod risk;
pub mod ruletest;
pub mod signing;
pub mod sms;
pub mod store;
pub mod waf;
