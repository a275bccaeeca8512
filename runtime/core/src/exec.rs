//! Running untrusted code. Python and JavaScript run in language runtimes
//! that are themselves wasm programs (`python.wasm`, `js.wasm` in the runtime
//! directory); any other WASI program runs as it is. Each run gets a fresh
//! sandbox: the code read-only at `/code`, a scratch directory at `/work`,
//! and nothing else unless the caller grants it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::call::{CallOptions, CallOutcome, RunInput};
use crate::engine::Engine;
use crate::plugin::CompiledPlugin;
use crate::policy::{DirGrant, DirMode};

/// Where the scratch directory appears in the guest.
pub const WORK_DIR: &str = "/work";
/// Where the code appears in the guest (read-only).
pub const CODE_DIR: &str = "/code";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    Js,
}

impl Language {
    /// `python`/`py` or `js`/`javascript`.
    pub fn parse(name: &str) -> Option<Language> {
        match name.to_ascii_lowercase().as_str() {
            "python" | "py" => Some(Language::Python),
            "js" | "javascript" => Some(Language::Js),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Js => "js",
        }
    }

    /// The runtime component's file name in the runtime directory.
    pub fn runtime_file(self) -> &'static str {
        match self {
            Language::Python => "python.wasm",
            Language::Js => "js.wasm",
        }
    }

    fn script_file(self) -> &'static str {
        match self {
            Language::Python => "main.py",
            Language::Js => "main.js",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why code could not be run (before it ran: a run that fails is an
/// outcome, not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

/// The language runtimes of one engine, compiled on first use and shared.
pub(crate) struct Runtimes {
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<Language, CompiledPlugin>>,
}

impl Runtimes {
    pub(crate) fn new(dir: Option<PathBuf>) -> Runtimes {
        Runtimes {
            dir,
            loaded: Mutex::new(HashMap::new()),
        }
    }
}

impl Engine {
    /// The runtime for `language`, loaded from the runtime directory (and
    /// the compiled cache) the first time.
    pub fn runtime(&self, language: Language) -> Result<CompiledPlugin, ExecError> {
        let runtimes = &self.inner.runtimes;
        // Held while loading, so concurrent first uses compile once.
        let mut loaded = lock(&runtimes.loaded);
        if let Some(found) = loaded.get(&language) {
            return Ok(found.clone());
        }
        let Some(dir) = &runtimes.dir else {
            return Err(ExecError::Unsupported(format!(
                "no runtime directory is configured, so {language} cannot run; build the runtimes with `scripts/dev plugins` and pass --runtime-dir or set WARDEN_RUNTIME_DIR"
            )));
        };
        let path = dir.join(language.runtime_file());
        if !path.is_file() {
            return Err(ExecError::Unsupported(format!(
                "no {language} runtime at {}; build it with `scripts/dev plugins`, or point --runtime-dir / WARDEN_RUNTIME_DIR at a directory holding {}",
                path.display(),
                language.runtime_file()
            )));
        }
        let plugin = self
            .load_file(&path)
            .map_err(|e| ExecError::Unsupported(format!("the {language} runtime: {e}")))?;
        loaded.insert(language, plugin.clone());
        Ok(plugin)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory the code sees, read-write, at [`WORK_DIR`]. Removed
/// when dropped unless kept.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Result<Scratch, ExecError> {
        let dir = tempfile::Builder::new()
            .prefix("warden-scratch-")
            .tempdir()
            .map_err(|e| ExecError::Io(format!("cannot create a scratch directory: {e}")))?;
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The grants that mount it: at [`WORK_DIR`], and as `.` so that
    /// relative paths land in it too (wasi-libc resolves them against a `.`
    /// preopen, whatever the working directory says).
    pub fn grants(&self) -> [DirGrant; 2] {
        [WORK_DIR, "."].map(|guest| DirGrant {
            host: self.dir.path().to_path_buf(),
            guest: guest.to_string(),
            mode: DirMode::ReadWrite,
        })
    }

    /// Writes a file at `relative` (no absolute paths, no `..`).
    pub fn write(&self, relative: &str, contents: &[u8]) -> Result<(), ExecError> {
        let rel = Path::new(relative);
        let plain = !relative.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain {
            return Err(ExecError::Invalid(format!(
                "file path {relative:?} must be relative to {WORK_DIR}, without `..`"
            )));
        }
        let path = self.dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ExecError::Io(format!("cannot create {relative}: {e}")))?;
        }
        std::fs::write(&path, contents)
            .map_err(|e| ExecError::Io(format!("cannot write {relative}: {e}")))
    }

    /// Copies the files and directories under `from` in. Symlinks are
    /// skipped: following them could copy in what the caller never meant to
    /// share.
    pub fn copy_from(&self, from: &Path) -> Result<Vec<PathBuf>, ExecError> {
        let mut skipped = Vec::new();
        copy_tree(from, self.dir.path(), &mut skipped)
            .map_err(|e| ExecError::Io(format!("cannot copy {}: {e}", from.display())))?;
        Ok(skipped)
    }

    /// Copies what the code left in the scratch directory to `to`.
    pub fn keep_to(&self, to: &Path) -> Result<(), ExecError> {
        std::fs::create_dir_all(to)
            .map_err(|e| ExecError::Io(format!("cannot create {}: {e}", to.display())))?;
        let mut skipped = Vec::new();
        copy_tree(self.dir.path(), to, &mut skipped).map_err(|e| {
            ExecError::Io(format!(
                "cannot keep the scratch dir in {}: {e}",
                to.display()
            ))
        })
    }
}

fn copy_tree(from: &Path, to: &Path, skipped: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target, skipped)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            skipped.push(entry.path());
        }
    }
    Ok(())
}

/// Runs `code` in `language`: the code read-only at `/code/main.EXT`, the
/// scratch directory at `/work` (the working directory), `stdin` as its
/// stdin, `args` after the script path. `options` carries the limits, the
/// tenant, and any further grant.
pub async fn run_code(
    engine: &Engine,
    language: Language,
    code: &str,
    scratch: &Scratch,
    stdin: Vec<u8>,
    args: &[String],
    options: &CallOptions,
) -> Result<CallOutcome<i32>, ExecError> {
    let runtime = engine.runtime(language)?;
    let code_dir = tempfile::Builder::new()
        .prefix("warden-code-")
        .tempdir()
        .map_err(|e| ExecError::Io(format!("cannot create a code directory: {e}")))?;
    std::fs::write(code_dir.path().join(language.script_file()), code)
        .map_err(|e| ExecError::Io(format!("cannot write the code: {e}")))?;

    let mut options = options.clone();
    options.grant.dirs.extend(scratch.grants());
    options.grant.dirs.push(DirGrant {
        host: code_dir.path().to_path_buf(),
        guest: CODE_DIR.to_string(),
        mode: DirMode::ReadOnly,
    });
    let mut argv = vec![
        language.name().to_string(),
        format!("{CODE_DIR}/{}", language.script_file()),
    ];
    argv.extend(args.iter().cloned());
    let input = RunInput {
        args: argv,
        stdin,
        cwd: Some(WORK_DIR.to_string()),
    };
    Ok(runtime.run_program(&options, &input).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_writes_stay_inside() {
        let scratch = Scratch::new().unwrap();
        scratch.write("a/b.txt", b"x").unwrap();
        assert_eq!(std::fs::read(scratch.path().join("a/b.txt")).unwrap(), b"x");
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(
                matches!(scratch.write(bad, b"x"), Err(ExecError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn copy_skips_symlinks_and_keep_copies_back() {
        let from = tempfile::tempdir().unwrap();
        std::fs::create_dir(from.path().join("sub")).unwrap();
        std::fs::write(from.path().join("sub/f.txt"), "f").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.path().join("link")).unwrap();
        let scratch = Scratch::new().unwrap();
        let skipped = scratch.copy_from(from.path()).unwrap();
        assert_eq!(skipped, vec![from.path().join("link")]);
        assert_eq!(
            std::fs::read_to_string(scratch.path().join("sub/f.txt")).unwrap(),
            "f"
        );
        assert!(!scratch.path().join("link").exists());

        let kept = tempfile::tempdir().unwrap();
        scratch.write("out.txt", b"result").unwrap();
        scratch.keep_to(kept.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(kept.path().join("out.txt")).unwrap(),
            "result"
        );
    }

    #[test]
    fn language_names() {
        assert_eq!(Language::parse("PY"), Some(Language::Python));
        assert_eq!(Language::parse("javascript"), Some(Language::Js));
        assert_eq!(Language::parse("ruby"), None);
    }
}
