//! Sign-in risk: signals, scoring, decisions by mode and app client, and the compromised-credential filter.

pub mod breach;
