//! Manifests as TOML, and the custom sections of a wasm file that carry
//! them: never a panic, and a manifest that parses passes its own checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_core::manifest::{self, Manifest};

fuzz_target!(|data: &[u8]| {
    let _ = manifest::scan(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(parsed) = Manifest::from_toml(text)
    {
        // What parsed re-serialises and parses to the same manifest.
        let again = toml::to_string(&parsed).expect("a manifest serialises");
        assert_eq!(Manifest::from_toml(&again).as_ref(), Ok(&parsed));
    }
});
