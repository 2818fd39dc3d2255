//! Integration tests: the real `authward` binary on loopback ports against real upstreams.

mod admin;
mod breach;
mod check;
mod corpus;
mod demo;
mod events;
mod forwarding;
mod harness;
mod hostile;
mod lifecycle;
mod mfa;
mod policies;
mod profiles;
mod redis;
mod risk;
mod rules;
mod sms;
mod store;
mod tls;
mod waf;
