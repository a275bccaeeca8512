//! The operator's memory settings: which embedder, and the limits.
//! Read from `DATA_DIR/memory.toml` (or `$WARDEN_MEMORY_CONFIG`); without
//! a file, the local MiniLM and the default limits.
//!
//! ```toml
//! [embedder]
//! kind = "openai"                       # or "local" (the default)
//! base-url = "http://127.0.0.1:11434/v1"
//! model = "nomic-embed-text"
//! dimension = 768
//! api-key-env = "OPENAI_API_KEY"        # optional; the key never reaches a guest
//! timeout-ms = 30000
//!
//! [limits]
//! max-content-bytes = 65536
//! max-top-k = 100
//! max-entries = 1000000
//! index-threshold = 20000
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use warden_llm::ConfigError;

use crate::Limits;
use crate::embed::{EmbedError, Embedder, LocalEmbedder, OpenAiEmbedder};
use crate::store::{EmbedderLoader, Memory};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    #[serde(default)]
    pub embedder: EmbedderConfig,
    #[serde(default)]
    limits: LimitsDoc,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum EmbedderConfig {
    /// all-MiniLM-L6-v2 from `warden models fetch`.
    #[default]
    Local,
    /// An OpenAI-compatible `/v1/embeddings` endpoint.
    #[serde(rename_all = "kebab-case")]
    Openai {
        base_url: String,
        model: String,
        dimension: usize,
        api_key_env: Option<String>,
        timeout_ms: Option<u64>,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsDoc {
    max_content_bytes: Option<usize>,
    max_meta_bytes: Option<usize>,
    max_tags: Option<usize>,
    max_top_k: Option<u32>,
    max_entries: Option<u64>,
    index_threshold: Option<usize>,
}

impl MemoryConfig {
    /// Reads a config file; errors name the file and the field.
    /// The config a warden process uses: `$WARDEN_MEMORY_CONFIG`, else
    /// `DATA_DIR/memory.toml` if there is one, else the defaults (the local
    /// embedder, default limits).
    pub fn find(data_dir: &Path) -> Result<MemoryConfig, ConfigError> {
        let path = std::env::var_os("WARDEN_MEMORY_CONFIG")
            .map(PathBuf::from)
            .or_else(|| Some(data_dir.join("memory.toml")).filter(|p| p.is_file()));
        match path {
            Some(path) => MemoryConfig::load(&path),
            None => Ok(MemoryConfig::default()),
        }
    }

    /// The store in `DATA_DIR/memory` under this config. The embedder is
    /// made on first use, so reads work (and say what is missing) on a
    /// machine without the model files.
    pub fn open(&self, data_dir: &Path) -> Memory {
        Memory::new(
            &data_dir.join("memory"),
            self.loader(data_dir),
            self.limits(),
        )
    }

    pub fn load(path: &Path) -> Result<MemoryConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            what: "memory config",
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        MemoryConfig::parse(&text)
            .map_err(|e| ConfigError::Invalid(format!("memory config {}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> Result<MemoryConfig, ConfigError> {
        let config: MemoryConfig =
            toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let EmbedderConfig::Openai {
            base_url,
            dimension,
            ..
        } = &config.embedder
        {
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "`embedder.base-url` {base_url:?} is not an http(s) URL; write e.g. \"http://127.0.0.1:11434/v1\""
                )));
            }
            if *dimension == 0 || *dimension > 16_384 {
                return Err(ConfigError::Invalid(format!(
                    "`embedder.dimension` {dimension} is not a vector size; give the model's (e.g. 1536)"
                )));
            }
        }
        let limits = config.limits();
        if limits.max_top_k == 0 || limits.max_content_bytes == 0 || limits.max_entries == 0 {
            return Err(ConfigError::Invalid(
                "`limits` values must be above 0".into(),
            ));
        }
        Ok(config)
    }

    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        let l = &self.limits;
        Limits {
            max_content_bytes: l.max_content_bytes.unwrap_or(d.max_content_bytes),
            max_meta_bytes: l.max_meta_bytes.unwrap_or(d.max_meta_bytes),
            max_tags: l.max_tags.unwrap_or(d.max_tags),
            max_top_k: l.max_top_k.unwrap_or(d.max_top_k),
            max_entries: l.max_entries.unwrap_or(d.max_entries),
            index_threshold: l.index_threshold.unwrap_or(d.index_threshold),
        }
    }

    /// Makes the embedder when first needed. A remote key is read from its
    /// environment variable then, and a missing one is named.
    pub fn loader(&self, data_dir: &Path) -> EmbedderLoader {
        let data_dir: PathBuf = data_dir.to_path_buf();
        match self.embedder.clone() {
            EmbedderConfig::Local => Box::new(move || {
                LocalEmbedder::load(&data_dir).map(|e| Arc::new(e) as Arc<dyn Embedder>)
            }),
            EmbedderConfig::Openai {
                base_url,
                model,
                dimension,
                api_key_env,
                timeout_ms,
            } => Box::new(move || {
                let key = match &api_key_env {
                    Some(var) => Some(std::env::var(var).map_err(|_| {
                        EmbedError::Unavailable(format!(
                            "the memory config's embedder reads its key from ${var}, which is not set"
                        ))
                    })?),
                    None => None,
                };
                let timeout = Duration::from_millis(timeout_ms.unwrap_or(30_000));
                OpenAiEmbedder::new(&base_url, key, &model, dimension, timeout)
                    .map(|e| Arc::new(e) as Arc<dyn Embedder>)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_embedders_and_names_bad_fields() {
        let c = MemoryConfig::parse("").unwrap();
        assert!(matches!(c.embedder, EmbedderConfig::Local));
        assert_eq!(c.limits().max_top_k, 100);
        let c = MemoryConfig::parse(
            "[embedder]\nkind = \"openai\"\nbase-url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\ndimension = 8\n[limits]\nmax-top-k = 7\n",
        )
        .unwrap();
        assert!(matches!(
            c.embedder,
            EmbedderConfig::Openai { dimension: 8, .. }
        ));
        assert_eq!(c.limits().max_top_k, 7);
        let e = MemoryConfig::parse(
            "[embedder]\nkind = \"openai\"\nbase-url = \"ftp://x\"\nmodel = \"m\"\ndimension = 8\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("embedder.base-url"), "{e}");
        let e = MemoryConfig::parse("[limits]\nmax-topk = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max-topk"), "{e}");
        let e = MemoryConfig::parse("[embedder]\nkind = \"magic\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic"), "{e}");
    }
}
