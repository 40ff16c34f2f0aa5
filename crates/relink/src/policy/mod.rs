//! Pure decisions: no sockets, no clocks, no randomness of their own.
//!
//! Each takes what it decides on (attempt number, a random sample, the error, `now`) as
//! arguments, so tests pin every branch without real time.

pub mod backoff;
pub mod classify;
pub mod escalation;
