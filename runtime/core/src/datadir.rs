//! Where a warden process keeps things: the data dir (compiled artifacts,
//! memory, run journals, models, the usage ledger) and the language
//! runtimes, found the same way by every front end.

use std::path::{Path, PathBuf};

/// `flag` (`--data-dir`), else `$WARDEN_DATA_DIR`, else the XDG data dir
/// (`~/.local/share/warden`).
pub fn data_dir(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("WARDEN_DATA_DIR").map(PathBuf::from))
        .or_else(|| dirs::data_dir().map(|d| d.join("warden")))
}

/// `flag` (`--runtime-dir`), else `$WARDEN_RUNTIME_DIR`, else
/// `DATA_DIR/runtimes` if it exists, else `runtimes` beside the directory
/// holding the running binary (where a checkout's build puts them:
/// `target/runtimes` for `target/debug/warden`).
pub fn runtime_dir(flag: Option<PathBuf>, data_dir: Option<&Path>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("WARDEN_RUNTIME_DIR").map(PathBuf::from))
        .or_else(|| data_dir.map(|d| d.join("runtimes")).filter(|d| d.is_dir()))
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.join("runtimes"))
        })
}

/// Where programs' scratch directories go in a data dir.
pub fn scratch_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("scratch")
}

/// Where compiled artifacts are cached in a data dir.
pub fn compiled_cache(data_dir: &Path) -> PathBuf {
    data_dir.join("cache").join("compiled")
}
