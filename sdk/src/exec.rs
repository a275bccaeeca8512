//! Running code from a plugin, through the host: each run gets a fresh
//! sandbox with a scratch directory at /work, no network, no environment, and
//! limits no wider than the calling plugin's.

pub use crate::bindings::warden::plugin::exec::{ExecError, File, RunResult};

/// Runs `code` in `language` (`"python"` or `"js"`), feeding it `stdin`,
/// after writing `files` into /work.
pub fn run(
    language: &str,
    code: &str,
    stdin: &[u8],
    files: &[File],
) -> Result<RunResult, ExecError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::warden::plugin::exec::run(language, code, stdin, files)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (code, stdin, files);
        Err(ExecError::Unsupported(format!(
            "running {language} is only available inside warden (build for wasm32-wasip2)"
        )))
    }
}

impl From<ExecError> for crate::ToolError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Unsupported(m) | ExecError::Failed(m) => crate::ToolError::Failed(m),
            ExecError::Invalid(m) => crate::ToolError::InvalidArguments(m),
        }
    }
}
