//! Policy files: never a panic; every grant that parses is one the typed
//! parsers accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_core::{NamespaceGrant, Policy};

fuzz_target!(|text: &str| {
    if let Ok(policy) = Policy::from_toml(text, std::path::Path::new("/base")) {
        for grant in std::iter::once(&policy.grant).chain(policy.plugins.values().map(|p| &p.grant))
        {
            for ns in &grant.memory {
                assert_eq!(NamespaceGrant::parse(&ns.to_string()).as_ref(), Ok(ns));
            }
            for dir in &grant.dirs {
                assert!(dir.host.starts_with("/base") || dir.host.is_absolute());
            }
        }
    }
});
