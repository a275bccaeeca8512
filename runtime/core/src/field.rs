//! One error shape for every file an operator or author writes (manifests,
//! policy files, workflows): the field at fault, what is wrong with it, and
//! how to fix it.

use std::fmt;

/// `field `plugins.fs.sha256`: "x" is not a SHA-256; copy the 64 hex
/// digits `warden plugin inspect` prints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The dotted path of the field, e.g. `roles.coder.memory[0]`.
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}; {}", self.field, self.problem, self.fix)
    }
}

impl std::error::Error for FieldError {}
