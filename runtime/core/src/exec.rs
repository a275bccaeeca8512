//! Running untrusted code. Python and JavaScript run in language runtimes
//! that are themselves wasm programs (`python.wasm`, `js.wasm` in the runtime
//! directory); any other WASI program runs as it is. Each run gets a fresh
//! sandbox: the code read-only at `/code`, a scratch directory at `/work`,
//! and nothing else unless the caller grants it.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::call::{CallError, CallOptions, CallOutcome, RunInput};
use crate::grant::{DirGrant, DirMode};
use crate::plugin::CompiledPlugin;

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
    /// Every language warden runs.
    pub const ALL: [Language; 2] = [Language::Python, Language::Js];

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

    pub(crate) fn script_file(self) -> &'static str {
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

/// A scratch directory the code sees, read-write, at [`WORK_DIR`]. Removed
/// when dropped unless kept.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    /// Where it was made: the code directory of a run goes beside it.
    root: PathBuf,
}

impl Scratch {
    /// A scratch directory in the system's temp dir.
    pub fn new() -> Result<Scratch, ExecError> {
        Scratch::new_in(&std::env::temp_dir())
    }

    /// A scratch directory under `root` (warden's own, in its data dir),
    /// named after this process so that a later warden can remove what a
    /// killed one left ([`remove_stale`]).
    pub fn new_in(root: &Path) -> Result<Scratch, ExecError> {
        let dir = make_dir_in(root, "scratch")?;
        Ok(Scratch {
            dir,
            root: root.to_path_buf(),
        })
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

    /// Copies what the code left in the scratch directory to `to`, which
    /// must not exist yet (or be an empty directory): nothing already there
    /// is overwritten. No link is followed, on either side; only regular
    /// files and directories are copied, and no `.git` directory (whose
    /// config could make the operator's next `git` run a command). Says
    /// what it wrote and what it left out.
    pub fn keep_to(&self, to: &Path) -> Result<Kept, ExecError> {
        if !check_keep_dir(to)? {
            if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    ExecError::Io(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            std::fs::create_dir(to)
                .map_err(|e| ExecError::Io(format!("cannot create {}: {e}", to.display())))?;
        }
        let mut kept = Kept::default();
        keep_tree(self.dir.path(), to, Path::new(""), &mut kept).map_err(|e| {
            ExecError::Io(format!(
                "cannot keep the scratch dir in {}: {e}",
                to.display()
            ))
        })?;
        Ok(kept)
    }
}

/// A new directory `KIND-PID-RANDOM` under `root`, removed when dropped.
fn make_dir_in(root: &Path, kind: &str) -> Result<tempfile::TempDir, ExecError> {
    std::fs::create_dir_all(root)
        .map_err(|e| ExecError::Io(format!("cannot create {}: {e}", root.display())))?;
    tempfile::Builder::new()
        .prefix(&format!("warden-{kind}-{}-", std::process::id()))
        .tempdir_in(root)
        .map_err(|e| ExecError::Io(format!("cannot create a {kind} directory: {e}")))
}

/// Removes the scratch and code directories under `root` that processes
/// no longer running left behind (a warden killed mid-run cannot clean up
/// after itself); returns how many. Those of live processes stay.
pub fn remove_stale(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| {
                n.strip_prefix("warden-scratch-")
                    .or_else(|| n.strip_prefix("warden-code-"))
            })
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(dir = %root.display(), removed, "removed scratch directories left by stopped processes");
    }
    removed
}

/// Whether `to` can take a kept scratch dir: `Ok(false)` when it does not
/// exist yet, `Ok(true)` when it is an empty directory, an error naming the
/// problem otherwise (a link, a file, a directory with something in it).
pub fn check_keep_dir(to: &Path) -> Result<bool, ExecError> {
    let refuse = |why: &str| {
        Err(ExecError::Invalid(format!(
            "cannot keep the scratch dir in {}: {why}; give a new directory",
            to.display()
        )))
    };
    match std::fs::symlink_metadata(to) {
        Ok(meta) if meta.file_type().is_symlink() => refuse("it is a symbolic link"),
        Ok(meta) if !meta.is_dir() => refuse("it exists and is not a directory"),
        Ok(_) => {
            let mut entries = std::fs::read_dir(to)
                .map_err(|e| ExecError::Io(format!("cannot read {}: {e}", to.display())))?;
            if entries.next().is_some() {
                return refuse("it exists and is not empty");
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ExecError::Io(format!("cannot use {}: {e}", to.display()))),
    }
}

/// What [`Scratch::keep_to`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// Files written, relative to the directory.
    pub files: Vec<PathBuf>,
    /// What was left out, relative, and why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

fn keep_tree(from: &Path, to: &Path, relative: &Path, kept: &mut Kept) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let no_follow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let rel = relative.join(&name);
        // The entry itself, not what a link points to.
        let kind = entry.file_type()?;
        if name == ".git" {
            kept.skipped
                .push((rel, "a .git directory could make git run commands"));
        } else if kind.is_dir() {
            std::fs::create_dir(to.join(&name))?;
            keep_tree(&entry.path(), &to.join(&name), &rel, kept)?;
        } else if kind.is_file() {
            let mut source = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(no_follow)
                .open(entry.path())?;
            let mut target = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(no_follow)
                .open(to.join(&name))?;
            std::io::copy(&mut source, &mut target)?;
            kept.files.push(rel);
        } else if kind.is_symlink() {
            kept.skipped.push((rel, "a symbolic link"));
        } else {
            kept.skipped.push((rel, "not a regular file"));
        }
    }
    Ok(())
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

/// Runs `code` in `runtime`, the language runtime of `language`: the code
/// read-only at `/code/main.EXT`, the scratch directory at `/work` (the
/// working directory), `stdin` as its stdin, `args` after the script path.
/// `options` carries the limits, the tenant, and any further grant.
pub(crate) async fn run_code(
    runtime: &CompiledPlugin,
    language: Language,
    code: &str,
    scratch: &Scratch,
    stdin: Vec<u8>,
    args: &[String],
    options: &CallOptions,
) -> Result<CallOutcome<i32>, ExecError> {
    let code_dir = make_dir_in(&scratch.root, "code")?;
    std::fs::write(code_dir.path().join(language.script_file()), code)
        .map_err(|e| ExecError::Io(format!("cannot write the code: {e}")))?;

    let code = DirGrant {
        host: code_dir.path().to_path_buf(),
        guest: CODE_DIR.to_string(),
        mode: DirMode::ReadOnly,
    };
    let argv = [
        language.name().to_string(),
        format!("{CODE_DIR}/{}", language.script_file()),
    ];
    let (options, input) = in_scratch(options, scratch, Some(code), argv, args, stdin);
    Ok(runtime.run_program(&options, &input).await)
}

/// Runs `program` (any `wasi:cli/run` component) with `scratch` at `/work`
/// (its working directory), argv `name args…` and `stdin`. `options`
/// carries the limits, the tenant and any further grant.
pub async fn run_wasi_program(
    program: &CompiledPlugin,
    name: &str,
    scratch: &Scratch,
    stdin: Vec<u8>,
    args: &[String],
    options: &CallOptions,
) -> CallOutcome<i32> {
    let (options, input) = in_scratch(options, scratch, None, [name.to_string()], args, stdin);
    program.run_program(&options, &input).await
}

/// The options and input of a program run in `scratch`: `options` with
/// the scratch dir granted (and `code`, when given), argv `argv0… args…`,
/// `stdin`, `/work` the working directory. File operations run on the
/// calling thread when the operator granted no directory of its own (see
/// [`RunInput::own_dirs_only`]).
fn in_scratch(
    options: &CallOptions,
    scratch: &Scratch,
    code: Option<DirGrant>,
    argv0: impl IntoIterator<Item = String>,
    args: &[String],
    stdin: Vec<u8>,
) -> (CallOptions, RunInput) {
    let mut options = options.clone();
    let own_dirs_only = options.grant.dirs.is_empty();
    options.grant.dirs.extend(scratch.grants());
    options.grant.dirs.extend(code);
    let input = RunInput {
        args: argv0.into_iter().chain(args.iter().cloned()).collect(),
        stdin,
        cwd: Some(WORK_DIR.to_string()),
        own_dirs_only,
    };
    (options, input)
}

/// What a program run did, as `warden exec --json` prints it and the
/// `warden:plugin/exec` interface returns it: `{"stdout", "stderr",
/// "exit_code", "duration_ms", "fuel_used", "limit", "trap"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecReport {
    /// Capped; a marker at the end says when it was truncated.
    pub stdout: String,
    pub stderr: String,
    /// None when a limit or a trap stopped the program.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub fuel_used: u64,
    /// The limit that stopped it: fuel, deadline, memory or output.
    pub limit: Option<String>,
    /// Why it trapped, when it trapped for another reason.
    pub trap: Option<String>,
}

impl ExecReport {
    /// The report of a run that started. A run that could not be set up
    /// (a granted directory that cannot be opened) is bad input, not a
    /// report: that error comes back as it is.
    pub fn new(outcome: &CallOutcome<i32>) -> Result<ExecReport, CallError> {
        let (exit_code, limit, trap) = match &outcome.result {
            Ok(code) => (Some(*code), None, None),
            Err(CallError::Limit { kind, .. }) => (None, Some(kind.to_string()), None),
            Err(e @ CallError::Setup(_)) => return Err(e.clone()),
            Err(other) => (None, None, Some(other.to_string())),
        };
        Ok(ExecReport {
            stdout: outcome.stdout.to_text(),
            stderr: outcome.stderr.to_text(),
            exit_code,
            duration_ms: outcome.usage.duration.as_millis() as u64,
            fuel_used: outcome.usage.fuel_used,
            limit,
            trap,
        })
    }
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

    /// What sandboxed code leaves behind must not reach past the directory
    /// the operator named: no overwriting, no links followed, no `.git`.
    #[test]
    fn keep_writes_only_regular_files_into_a_new_directory() {
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("canary.txt");
        std::fs::write(&canary, "CANARY-keep-7d1e").unwrap();
        let scratch = Scratch::new().unwrap();
        scratch.write("out/result.txt", b"result").unwrap();
        scratch
            .write(".git/config", b"[core]\nfsmonitor = touch pwned\n")
            .unwrap();
        std::os::unix::fs::symlink(&canary, scratch.path().join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), scratch.path().join("dir-link")).unwrap();

        // Into an existing directory with something in it: refused, and
        // what is there is untouched.
        let existing = tempfile::tempdir().unwrap();
        std::fs::write(existing.path().join("mine.txt"), "mine").unwrap();
        let refused = scratch.keep_to(existing.path()).unwrap_err();
        assert!(refused.to_string().contains("not empty"), "{refused}");
        assert_eq!(
            std::fs::read_to_string(existing.path().join("mine.txt")).unwrap(),
            "mine"
        );
        // Through a link: refused.
        let link = outside.path().join("link-to-dir");
        std::os::unix::fs::symlink(existing.path(), &link).unwrap();
        let refused = scratch.keep_to(&link).unwrap_err();
        assert!(refused.to_string().contains("symbolic link"), "{refused}");

        let base = tempfile::tempdir().unwrap();
        let to = base.path().join("new/kept");
        let kept = scratch.keep_to(&to).unwrap();
        assert_eq!(kept.files, vec![PathBuf::from("out/result.txt")]);
        let mut skipped: Vec<&Path> = kept.skipped.iter().map(|(p, _)| p.as_path()).collect();
        skipped.sort();
        assert_eq!(
            skipped,
            [
                Path::new(".git"),
                Path::new("dir-link"),
                Path::new("leak.txt")
            ]
        );
        assert_eq!(
            std::fs::read_to_string(to.join("out/result.txt")).unwrap(),
            "result"
        );
        assert!(!to.join(".git").exists());
        assert!(std::fs::symlink_metadata(to.join("leak.txt")).is_err());
        assert!(std::fs::symlink_metadata(to.join("dir-link")).is_err());
    }

    #[test]
    fn scratch_left_by_a_stopped_process_is_removed_and_a_live_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        // Above any pid_max, so never a running process.
        let dead = 4_294_967_294u32;
        let mine = std::process::id();
        for name in [
            format!("warden-scratch-{dead}-a"),
            format!("warden-code-{dead}-b"),
            format!("warden-scratch-{mine}-c"),
            "warden-scratch-notapid".to_string(),
            "other".to_string(),
        ] {
            std::fs::create_dir_all(root.path().join(&name).join("inside")).unwrap();
        }
        assert_eq!(remove_stale(root.path()), 2);
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "other".to_string(),
                format!("warden-scratch-{mine}-c"),
                "warden-scratch-notapid".to_string()
            ]
        );
    }

    #[test]
    fn language_names() {
        assert_eq!(Language::parse("PY"), Some(Language::Python));
        assert_eq!(Language::parse("javascript"), Some(Language::Js));
        assert_eq!(Language::parse("ruby"), None);
    }
}
