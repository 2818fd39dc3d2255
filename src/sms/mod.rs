//! SMS pumping and toll-fraud protection for the operations that make the backend send an SMS.

pub mod number;
pub mod prefixes;
