//! Where plugins are found: the directories `warden run` and `warden serve`
//! search, and the `.wasm` files in one.

use std::path::{Path, PathBuf};

use crate::exit::Failure;

/// `--plugin-dir`s, then $WARDEN_PLUGIN_DIR, DATA_DIR/plugins, and
/// `plugins` beside the directory of the binary (target/plugins in a
/// checkout).
pub fn plugin_dirs(flags: &[PathBuf], data: &Path) -> Vec<PathBuf> {
    let mut dirs = flags.to_vec();
    if let Some(env) = std::env::var_os("WARDEN_PLUGIN_DIR") {
        dirs.extend(std::env::split_paths(&env));
    }
    dirs.push(data.join("plugins"));
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("plugins")))
    {
        dirs.push(dir);
    }
    dirs
}

/// The `.wasm` files of `dir`, sorted, so tool order is stable.
pub fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
