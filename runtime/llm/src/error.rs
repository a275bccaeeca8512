//! Why the model layer could not be set up: a config that cannot be read or
//! used, a provider that cannot be built (a missing key, a cassette that is
//! not there).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: String,
    },
    /// The message names the file or provider and the fix.
    #[error("{0}")]
    Invalid(String),
}
