//! Measurements of relink: the fleet outage simulation and, later, end-to-end benchmarks.

pub mod fleet;
