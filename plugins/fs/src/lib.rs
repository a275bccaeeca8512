//! The `fs` tool plugin: files in the directories the operator granted, and
//! nothing else.
//!
//! ```text
//! warden tool call target/plugins/fs.wasm read_file \
//!     --args '{"path":"/data/notes.txt"}' --dir ./data::/data
//! ```
//!
//! The sandbox is what keeps it in: warden preopens only the granted
//! directories, read-only unless granted read-write. This plugin checks paths
//! against those preopens first only to give a clearer error.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use warden_sdk::{JsonSchema, ToolError, Toolbox};

const DEFAULT_MAX_READ: u64 = 1024 * 1024;
const DEFAULT_MAX_ENTRIES: usize = 1000;
const DEFAULT_MAX_RESULTS: usize = 100;
const MAX_SEARCH_FILE: u64 = 4 * 1024 * 1024;
const MAX_FILES_SEARCHED: usize = 10_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Text; reading a file that is not UTF-8 fails (use base64).
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    Base64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadArgs {
    /// Absolute path inside a granted directory, e.g. /data/notes.txt.
    pub path: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Read at most this many bytes (default 1 MiB).
    pub max_bytes: Option<u64>,
}

#[derive(Serialize)]
pub struct ReadResult {
    pub path: String,
    pub size: u64,
    pub encoding: Encoding,
    pub content: String,
    pub truncated: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// Absolute path inside a directory granted read-write.
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub encoding: Encoding,
    /// Append instead of replacing the file.
    #[serde(default)]
    pub append: bool,
    /// Create missing parent directories.
    #[serde(default)]
    pub create_dirs: bool,
}

#[derive(Serialize)]
pub struct WriteResult {
    pub path: String,
    pub bytes_written: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// Absolute path of a directory inside a granted directory.
    pub path: String,
    /// Descend into subdirectories (symlinks are listed, not followed).
    #[serde(default)]
    pub recursive: bool,
    /// Stop after this many entries (default 1000).
    pub max_entries: Option<usize>,
}

#[derive(Serialize)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub size: u64,
}

#[derive(Serialize)]
pub struct ListResult {
    pub path: String,
    pub entries: Vec<Entry>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathArgs {
    /// Absolute path inside a granted directory.
    pub path: String,
}

#[derive(Serialize)]
pub struct StatResult {
    pub path: String,
    pub kind: Kind,
    pub size: u64,
    /// Seconds since the Unix epoch, when known.
    pub modified: Option<u64>,
    pub readonly: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// A file, or a directory searched recursively.
    pub path: String,
    /// Substring to find, or a regular expression when `regex` is true.
    pub pattern: String,
    #[serde(default)]
    pub regex: bool,
    #[serde(default)]
    pub case_insensitive: bool,
    /// Stop after this many matching lines (default 100).
    pub max_results: Option<usize>,
}

#[derive(Serialize)]
pub struct Match {
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    pub text: String,
}

#[derive(Serialize)]
pub struct SearchResult {
    pub matches: Vec<Match>,
    pub files_searched: usize,
    pub truncated: bool,
}

pub fn toolbox() -> Toolbox {
    Toolbox::new()
        .tool("read_file", "Read a file (UTF-8 text or base64)", read_file)
        .tool(
            "write_file",
            "Write or append to a file in a read-write directory",
            write_file,
        )
        .tool(
            "list_dir",
            "List a directory, optionally recursively",
            list_dir,
        )
        .tool("stat", "Size, kind and modification time of a path", stat)
        .tool(
            "search",
            "Find lines matching a substring or regex in a file or directory tree",
            search,
        )
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

pub fn read_file(args: ReadArgs) -> Result<ReadResult, ToolError> {
    let path = checked(&args.path)?;
    let max = args.max_bytes.unwrap_or(DEFAULT_MAX_READ);
    let file = fs::File::open(&path).map_err(|e| io_error("read", &args.path, e))?;
    let size = file
        .metadata()
        .map_err(|e| io_error("read", &args.path, e))?
        .len();
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(ToolError::Failed(format!(
            "read {}: is a directory; use list_dir",
            args.path
        )));
    }
    let mut bytes = Vec::new();
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("read", &args.path, e))?;
    let truncated = (bytes.len() as u64) < size;
    let content = match args.encoding {
        Encoding::Utf8 => String::from_utf8(bytes).map_err(|_| {
            ToolError::Failed(format!(
                "read {}: not UTF-8 text; pass \"encoding\": \"base64\"",
                args.path
            ))
        })?,
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    Ok(ReadResult {
        path: args.path,
        size,
        encoding: args.encoding,
        content,
        truncated,
    })
}

pub fn write_file(args: WriteArgs) -> Result<WriteResult, ToolError> {
    let path = checked(&args.path)?;
    let bytes = match args.encoding {
        Encoding::Utf8 => args.content.into_bytes(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(args.content.as_bytes())
            .map_err(|e| ToolError::InvalidArguments(format!("content is not base64: {e}")))?,
    };
    if args.create_dirs
        && let Some(parent) = path.parent()
    {
        fs::create_dir_all(parent)
            .map_err(|e| io_error("create directories for", &args.path, e))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .append(args.append)
        .truncate(!args.append)
        .open(&path)
        .map_err(|e| io_error("write", &args.path, e))?;
    file.write_all(&bytes)
        .map_err(|e| io_error("write", &args.path, e))?;
    Ok(WriteResult {
        path: args.path,
        bytes_written: bytes.len() as u64,
    })
}

pub fn list_dir(args: ListArgs) -> Result<ListResult, ToolError> {
    let root = checked(&args.path)?;
    let max = args.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES);
    let mut entries = Vec::new();
    let mut pending = vec![root];
    let mut truncated = false;
    while let Some(dir) = pending.pop() {
        let mut listing: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| io_error("list", &dir.to_string_lossy(), e))?
            .filter_map(Result::ok)
            .collect();
        listing.sort_by_key(|e| e.file_name());
        for entry in listing {
            if entries.len() >= max {
                truncated = true;
                break;
            }
            let path = entry.path();
            let meta = entry.metadata().ok();
            let kind = match entry.file_type() {
                Ok(t) => kind_of(t),
                Err(_) => Kind::Other,
            };
            if args.recursive && kind == Kind::Dir {
                pending.push(path.clone());
            }
            entries.push(Entry {
                path: path.to_string_lossy().into_owned(),
                kind,
                size: meta.map(|m| m.len()).unwrap_or(0),
            });
        }
        if truncated {
            break;
        }
    }
    Ok(ListResult {
        path: args.path,
        entries,
        truncated,
    })
}

pub fn stat(args: PathArgs) -> Result<StatResult, ToolError> {
    let path = checked(&args.path)?;
    let meta = fs::symlink_metadata(&path).map_err(|e| io_error("stat", &args.path, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Ok(StatResult {
        path: args.path,
        kind: kind_of(meta.file_type()),
        size: meta.len(),
        modified,
        readonly: meta.permissions().readonly(),
    })
}

pub fn search(args: SearchArgs) -> Result<SearchResult, ToolError> {
    let root = checked(&args.path)?;
    if args.pattern.is_empty() {
        return Err(ToolError::InvalidArguments("`pattern` is empty".into()));
    }
    let source = if args.regex {
        args.pattern.clone()
    } else {
        regex::escape(&args.pattern)
    };
    let matcher = regex::RegexBuilder::new(&source)
        .case_insensitive(args.case_insensitive)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| ToolError::InvalidArguments(format!("bad regex: {e}")))?;
    let max = args.max_results.unwrap_or(DEFAULT_MAX_RESULTS);

    let mut result = SearchResult {
        matches: Vec::new(),
        files_searched: 0,
        truncated: false,
    };
    let mut pending = vec![root];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| io_error("search", &path.to_string_lossy(), e))?;
        if meta.is_dir() {
            let mut children: Vec<PathBuf> = fs::read_dir(&path)
                .map_err(|e| io_error("search", &path.to_string_lossy(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            children.sort();
            // Reverse so the stack pops them in order.
            pending.extend(children.into_iter().rev());
            continue;
        }
        if !meta.is_file() || meta.len() > MAX_SEARCH_FILE {
            continue;
        }
        if result.files_searched >= MAX_FILES_SEARCHED {
            result.truncated = true;
            break;
        }
        result.files_searched += 1;
        let Ok(text) = fs::read_to_string(&path) else {
            // Binary or unreadable: not text to search.
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if matcher.is_match(line) {
                if result.matches.len() >= max {
                    result.truncated = true;
                    return Ok(result);
                }
                result.matches.push(Match {
                    path: path.to_string_lossy().into_owned(),
                    line: i + 1,
                    text: line.chars().take(500).collect(),
                });
            }
        }
    }
    Ok(result)
}

fn kind_of(t: fs::FileType) -> Kind {
    if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// The path, if it is absolute, has no `..`, and lies under a granted
/// directory. The sandbox enforces all of this anyway; checking first turns
/// "not found" into an error that says what is wrong.
fn checked(path: &str) -> Result<PathBuf, ToolError> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(ToolError::InvalidArguments(format!(
            "{path:?} is not absolute; give the full path, e.g. /data/notes.txt"
        )));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(ToolError::Denied(format!(
            "{path:?} contains `..`; paths may not leave the granted directories"
        )));
    }
    let granted = granted_dirs();
    if !granted.iter().any(|dir| p.starts_with(dir)) {
        let list = if granted.is_empty() {
            "none; ask the operator for --dir or --dir-rw".to_string()
        } else {
            granted.join(", ")
        };
        return Err(ToolError::Denied(format!(
            "{path} is outside the granted directories (granted: {list})"
        )));
    }
    Ok(p.to_path_buf())
}

fn granted_dirs() -> Vec<String> {
    #[cfg(target_arch = "wasm32")]
    {
        wasip2::filesystem::preopens::get_directories()
            .into_iter()
            .map(|(_, guest)| guest)
            .collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Vec::new()
    }
}

fn io_error(op: &str, path: &str, e: std::io::Error) -> ToolError {
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => ToolError::Denied(format!(
            "{op} {path}: not permitted (read-only grant, or a link leading outside the granted directories)"
        )),
        ErrorKind::NotFound => ToolError::Failed(format!("{op} {path}: not found")),
        _ => ToolError::Failed(format!("{op} {path}: {e}")),
    }
}
