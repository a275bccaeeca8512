//! The host side of each interface a plugin imports, one file each.

pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod http;
pub(crate) mod llm;
pub(crate) mod log;
pub(crate) mod memory;
pub(crate) mod tools;
