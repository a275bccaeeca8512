//! Cassettes: `record` wraps a provider and writes each request with its
//! answer; `replay` answers from such a file, so an agent's tests run the
//! same every time with no model at all. A request that was never recorded is
//! an error naming the closest one that was.
//!
//! A cassette is JSON lines: `{"model": …, "request": …, "response": …}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use warden_api::BoxFuture;
use warden_api::llm::{ChatRequest, Completion};

use crate::ConfigError;
use crate::provider::{Provider, ProviderError};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    model: String,
    request: ChatRequest,
    response: Completion,
}

/// What identifies a request on tape: everything but the routing fields.
fn key(model: &str, request: &ChatRequest) -> serde_json::Value {
    let mut r = request.clone();
    r.model = String::new();
    r.private = false;
    serde_json::json!({"model": model, "request": r})
}

pub struct Replay {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl Replay {
    pub fn load(path: &Path) -> Result<Replay, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            what: "cassette",
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let mut entries = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry: Entry = serde_json::from_str(line).map_err(|e| {
                ConfigError::Invalid(format!("cassette {} line {}: {e}", path.display(), i + 1))
            })?;
            entries.push(entry);
        }
        Ok(Replay {
            path: path.to_path_buf(),
            entries,
        })
    }

    fn find(&self, model: &str, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let wanted = key(model, request);
        if let Some(entry) = self
            .entries
            .iter()
            .find(|e| key(&e.model, &e.request) == wanted)
        {
            return Ok(entry.response.clone());
        }
        let asked = wanted.to_string();
        let closest = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, key(&e.model, &e.request).to_string()))
            .max_by_key(|(_, recorded)| common_prefix(recorded, &asked));
        Err(ProviderError::fatal(match closest {
            None => format!("cassette {} is empty; record it first", self.path.display()),
            Some((i, recorded)) => {
                let at = common_prefix(&recorded, &asked);
                format!(
                    "no recorded answer for this request in {}; the closest is entry {} (line {}), which differs at …{}… (recorded) vs …{}… (asked)",
                    self.path.display(),
                    i + 1,
                    i + 1,
                    excerpt(&recorded, at),
                    excerpt(&asked, at)
                )
            }
        }))
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

/// Up to 40 characters around byte `at`.
fn excerpt(s: &str, at: usize) -> String {
    let start = s.floor_char_boundary(at.saturating_sub(10));
    let end = s.floor_char_boundary((at + 30).min(s.len()));
    s[start..end].to_string()
}

impl Provider for Replay {
    fn is_local(&self) -> bool {
        true
    }

    fn complete<'a>(
        &'a self,
        model: &'a str,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move { self.find(model, request) })
    }
}

/// Records another provider's answers.
pub struct Record {
    inner: Box<dyn Provider>,
    path: PathBuf,
    file: Mutex<()>,
}

impl Record {
    pub fn new(inner: Box<dyn Provider>, path: &Path) -> Record {
        Record {
            inner,
            path: path.to_path_buf(),
            file: Mutex::new(()),
        }
    }

    fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{line}")
    }
}

impl Provider for Record {
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    fn complete<'a>(
        &'a self,
        model: &'a str,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let response = self.inner.complete(model, request).await?;
            let mut request = request.clone();
            request.model = String::new();
            request.private = false;
            let entry = Entry {
                model: model.to_string(),
                request,
                response: response.clone(),
            };
            if let Err(e) = self.append(&entry) {
                tracing::warn!(error = %e, "could not record a completion");
            }
            Ok(response)
        })
    }
}
