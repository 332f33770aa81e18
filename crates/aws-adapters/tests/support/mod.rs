//! What the adapter tests share: a moto server per test (see
//! `aws_adapters::emulator`) and unique resource names.

#![allow(dead_code)] // each test binary uses a different part of this

pub use aws_adapters::emulator::*;

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
