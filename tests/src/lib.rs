//! Shared support for warden's test suites: the paths of the wasm guests
//! (built from source by this crate's build script) and small real servers
//! the network tests point guests at.

#![forbid(unsafe_code)]

/// Paths of the built guests.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

pub mod fake_llm;
pub mod nats;
pub mod server;
