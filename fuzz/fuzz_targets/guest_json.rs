//! The JSON a guest hands the host (a model request's function parameters
//! and response schema, a memory's `meta.extra`, a tool's input schema):
//! checked for size and depth before it is parsed; never a panic, never a
//! parse past the caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_core::document::{MAX_BYTES, MAX_DEPTH, parse};

fuzz_target!(|text: &str| {
    if parse("the document", text).is_ok() {
        assert!(text.len() <= MAX_BYTES);
        // What parsed nests no deeper than the cap.
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(depth(&value) <= MAX_DEPTH, "{text}");
    }
});

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
