//! `warden memory ...`: the operator's view of the memory store, straight
//! to LanceDB in the data dir (plugins reach the same store through
//! `warden:plugin/memory`, under their grants).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use warden_api::memory::{Entry, Filter, Hit, MemoryError, Meta, SearchMode};
use warden_memory::Memory;
use warden_memory::chunk::chunk_text;

use crate::exit::{self, Failure};
use crate::terminal;

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Store a text.
    Add {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        meta: MetaArgs,
        /// The text to remember.
        text: String,
    },
    /// Search a namespace by meaning (default), by words, or both.
    Search {
        #[command(flatten)]
        at: At,
        /// How many results.
        #[arg(short = 'k', long = "top-k", default_value_t = 5)]
        top_k: u32,
        #[arg(long, default_value = "vector", value_parser = parse_mode)]
        mode: SearchMode,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
        query: String,
    },
    /// Show one entry.
    Get {
        #[command(flatten)]
        at: At,
        #[arg(long)]
        json: bool,
        id: String,
    },
    /// Delete one entry.
    Delete {
        #[command(flatten)]
        at: At,
        id: String,
    },
    /// List entries by metadata, oldest first.
    Find {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Entries, size, embedder and indices of one namespace, or of all.
    Stats {
        #[arg(long, short = 'n', value_name = "NS")]
        namespace: Option<String>,
        #[arg(long, default_value = "default", value_name = "ID")]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Chunk text files (a file, or every file under a directory) and store
    /// the chunks with their source.
    Import {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        meta: MetaArgs,
        /// Target chunk size, in tokens (estimated at 4 characters each).
        #[arg(long, default_value_t = 512)]
        chunk_tokens: usize,
        path: PathBuf,
    },
}

/// Which namespace, for which tenant.
#[derive(Args)]
pub struct At {
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: String,
    #[arg(long, default_value = "default", value_name = "ID")]
    tenant: String,
}

#[derive(Args)]
pub struct MetaArgs {
    /// api-doc, code, task, test, error, note, or any word.
    #[arg(long)]
    kind: Option<String>,
    /// A file path or URL.
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    task_id: Option<String>,
    /// The version it describes, e.g. a commit.
    #[arg(long = "doc-version", value_name = "VERSION")]
    version: Option<String>,
    #[arg(long)]
    platform: Option<String>,
    /// Repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Free-form JSON.
    #[arg(long, value_name = "JSON")]
    extra: Option<String>,
}

#[derive(Args)]
pub struct FilterArgs {
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    task_id: Option<String>,
    #[arg(long = "doc-version", value_name = "VERSION")]
    version: Option<String>,
    #[arg(long)]
    platform: Option<String>,
    /// Entries carrying any of these tags. Repeatable.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Created after this time (milliseconds since the Unix epoch).
    #[arg(long, value_name = "MS")]
    after: Option<i64>,
    #[arg(long, value_name = "MS")]
    before: Option<i64>,
}

impl MetaArgs {
    fn to_meta(&self) -> Result<Meta, Failure> {
        let extra = match &self.extra {
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|e| Failure::bad_input(format!("--extra is not JSON: {e}")))?,
            ),
            None => None,
        };
        Ok(Meta {
            kind: self.kind.clone(),
            source: self.source.clone(),
            task_id: self.task_id.clone(),
            version: self.version.clone(),
            platform: self.platform.clone(),
            tags: self.tags.clone(),
            extra,
        })
    }
}

impl FilterArgs {
    fn to_filter(&self) -> Filter {
        Filter {
            kind: self.kind.clone(),
            source: self.source.clone(),
            task_id: self.task_id.clone(),
            version: self.version.clone(),
            platform: self.platform.clone(),
            tags: self.tags.clone(),
            created_after: self.after,
            created_before: self.before,
        }
    }
}

fn parse_mode(s: &str) -> Result<SearchMode, String> {
    s.parse()
}

pub async fn run(cmd: MemoryCommand, memory: Memory) -> Result<ExitCode, Failure> {
    match cmd {
        MemoryCommand::Add { at, meta, text } => {
            let id = memory
                .store(&at.tenant, &at.namespace, text, meta.to_meta()?)
                .await
                .map_err(failure)?;
            println!("{id}");
        }
        MemoryCommand::Search {
            at,
            top_k,
            mode,
            filter,
            json,
            query,
        } => {
            let hits = memory
                .search(
                    &at.tenant,
                    &at.namespace,
                    &query,
                    top_k,
                    &filter.to_filter(),
                    mode,
                )
                .await
                .map_err(failure)?;
            if json {
                print_json(&hits)?;
            } else if hits.is_empty() {
                println!("no matches in {}", at.namespace);
            } else {
                for Hit { entry, score } in &hits {
                    println!("{score:.3}  {}", summary(entry));
                }
            }
        }
        MemoryCommand::Get { at, json, id } => {
            let entry = memory
                .get(&at.tenant, &at.namespace, &id)
                .await
                .map_err(failure)?;
            if json {
                print_json(&entry)?;
            } else {
                print_entry(&entry);
            }
        }
        MemoryCommand::Delete { at, id } => {
            memory
                .delete(&at.tenant, &at.namespace, &id)
                .await
                .map_err(failure)?;
            println!("deleted {id}");
        }
        MemoryCommand::Find {
            at,
            filter,
            limit,
            json,
        } => {
            let entries = memory
                .find(&at.tenant, &at.namespace, &filter.to_filter(), limit)
                .await
                .map_err(failure)?;
            if json {
                print_json(&entries)?;
            } else {
                for entry in &entries {
                    println!("{}", summary(entry));
                }
            }
        }
        MemoryCommand::Stats {
            namespace,
            tenant,
            json,
        } => {
            let names = match namespace {
                Some(ns) => vec![ns],
                None => memory.namespaces(&tenant).await.map_err(failure)?,
            };
            let mut all = Vec::new();
            for ns in names {
                all.push(memory.stats(&tenant, &ns).await.map_err(failure)?);
            }
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!("tenant {tenant} has no memory namespaces yet");
            } else {
                for s in &all {
                    println!(
                        "{}: {} entries, {} bytes, {} ({} dimensions), version {}",
                        s.namespace, s.entries, s.bytes, s.embedder, s.dimension, s.version
                    );
                    for index in &s.indices {
                        println!("  index {index}");
                    }
                }
            }
        }
        MemoryCommand::Import {
            at,
            meta,
            chunk_tokens,
            path,
        } => {
            let meta = meta.to_meta()?;
            import(&memory, &at, meta, chunk_tokens, &path).await?;
        }
    }
    // Let the writers finish their upkeep (the full-text index after the
    // first store, compaction) before the process ends.
    memory.settle().await.map_err(failure)?;
    Ok(ExitCode::SUCCESS)
}

async fn import(
    memory: &Memory,
    at: &At,
    meta: Meta,
    chunk_tokens: usize,
    path: &Path,
) -> Result<(), Failure> {
    if !(64..=4096).contains(&chunk_tokens) {
        return Err(Failure::bad_input(format!(
            "--chunk-tokens {chunk_tokens}: use 64 to 4096"
        )));
    }
    let files = text_files(path)?;
    if files.is_empty() {
        return Err(Failure::bad_input(format!(
            "{}: no text files to import",
            path.display()
        )));
    }
    let mut chunks = Vec::new();
    let mut skipped = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            skipped += 1;
            continue;
        };
        let source = file.display().to_string();
        for chunk in chunk_text(&text, chunk_tokens * 4, chunk_tokens / 8 * 4) {
            let mut m = meta.clone();
            m.source.get_or_insert_with(|| source.clone());
            chunks.push((chunk, m));
        }
    }
    let bar = indicatif::ProgressBar::new(chunks.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} chunks, {per_sec}, eta {eta}",
        )
        .map_err(|e| Failure::internal(e.to_string()))?,
    );
    let total = chunks.len();
    let mut rest = chunks;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(32));
        let n = rest.len();
        memory
            .store_many(&at.tenant, &at.namespace, rest)
            .await
            .map_err(failure)?;
        bar.inc(n as u64);
        rest = tail;
    }
    bar.finish_and_clear();
    println!(
        "imported {total} chunks from {} file(s) into {}{}",
        files.len() - skipped,
        at.namespace,
        if skipped > 0 {
            format!(" ({skipped} not UTF-8 text, skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `path` itself, or every file under it (sorted, hidden ones skipped).
fn text_files(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Failure::bad_input(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

fn summary(e: &Entry) -> String {
    let mut labels = Vec::new();
    if let Some(k) = &e.meta.kind {
        labels.push(k.clone());
    }
    if let Some(s) = &e.meta.source {
        labels.push(s.clone());
    }
    labels.extend(e.meta.tags.iter().map(|t| format!("#{t}")));
    let mut text: String = e.content.chars().take(100).collect();
    if text.len() < e.content.len() {
        text.push('…');
    }
    let text = text.replace('\n', " ");
    let line = if labels.is_empty() {
        format!("{}  {text}", e.id)
    } else {
        format!("{}  [{}] {text}", e.id, labels.join(" "))
    };
    terminal::escape(&line).into_owned()
}

fn print_entry(e: &Entry) {
    let mut out = String::new();
    macro_rules! say {
        ($($arg:tt)*) => {{
            out.push_str(&format!($($arg)*));
            out.push('\n');
        }};
    }
    say!("id:       {}", e.id);
    for (name, value) in [
        ("kind", &e.meta.kind),
        ("source", &e.meta.source),
        ("task-id", &e.meta.task_id),
        ("version", &e.meta.version),
        ("platform", &e.meta.platform),
    ] {
        if let Some(v) = value {
            say!("{:<9} {v}", format!("{name}:"));
        }
    }
    if !e.meta.tags.is_empty() {
        say!("tags:     {}", e.meta.tags.join(", "));
    }
    if let Some(extra) = &e.meta.extra {
        say!("extra:    {extra}");
    }
    say!("created:  {} ms", e.created_at);
    say!("");
    say!("{}", e.content);
    // What a plugin stored: escaped for the terminal.
    print!("{}", terminal::escape(&out));
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::internal(e.to_string()))?;
    println!("{}", terminal::escape_json(&text));
    Ok(())
}

fn failure(e: MemoryError) -> Failure {
    let code = match &e {
        MemoryError::Invalid(_) => exit::BAD_INPUT,
        MemoryError::Denied(_) => exit::LIMIT,
        MemoryError::NotFound(_) | MemoryError::Unavailable(_) => exit::PLUGIN_ERROR,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}
