//! Integration tests: the real `authward` binary on loopback ports against real upstreams.

mod admin;
mod check;
mod corpus;
mod demo;
mod forwarding;
mod harness;
mod lifecycle;
mod profiles;
mod rules;
mod store;
mod tls;
mod waf;
