//! Entry points for the fuzz targets in `fuzz/`: what a guest sends, as the
//! host reads it. Not an API.

pub use crate::document::{MAX_BYTES, MAX_DEPTH};

/// A JSON document a guest hands the host (a model request's schemas,
/// `meta.extra`, a tool's input schema), read as the host reads it: size
/// and depth checked, then parsed.
pub fn guest_document(text: &str) -> Result<serde_json::Value, String> {
    crate::document::parse("the document", text)
}
