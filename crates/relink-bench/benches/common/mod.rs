//! Code shared by the `codec` (criterion) and `e2e` bench targets.
// Each target uses a different part of it.
#![allow(dead_code)]

pub mod codec_cases;
