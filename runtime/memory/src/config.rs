//! The operator's memory settings: which embedder, where the tables live,
//! and the limits.
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
//! [store]                             # optional: tables in S3 instead of DATA_DIR/memory
//! uri = "s3://warden-memory/prod"       # tables at URI/TENANT/NAMESPACE.lance
//! endpoint = "http://127.0.0.1:9000"    # optional: an S3-compatible server (MinIO…)
//! region = "us-east-1"
//! access-key-id-env = "AWS_ACCESS_KEY_ID"         # optional: where the credentials are;
//! secret-access-key-env = "AWS_SECRET_ACCESS_KEY" # else AWS's usual chain
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
use crate::store::{EmbedderLoader, Location, Memory};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    #[serde(default)]
    pub embedder: EmbedderConfig,
    /// Where the tables live; `None`: `DATA_DIR/memory`.
    pub store: Option<StoreConfig>,
    #[serde(default)]
    limits: LimitsDoc,
}

/// An S3 bucket (or an S3-compatible server) the tables live in, shared by
/// every node that names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreConfig {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub uri: String,
    /// An S3-compatible server's URL; AWS when absent. `http://` allows
    /// plain HTTP to it.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Environment variables holding the credentials; without them,
    /// AWS's usual chain (`AWS_*` variables, profile, instance role).
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
}

impl StoreConfig {
    fn check(&self) -> Result<(), ConfigError> {
        let bucket = self
            .uri
            .strip_prefix("s3://")
            .map(|rest| rest.split('/').next().unwrap_or_default())
            .unwrap_or_default();
        if bucket.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "`store.uri` {:?} is not an S3 location; write \"s3://BUCKET\" or \"s3://BUCKET/PREFIX\"",
                self.uri
            )));
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "`store.endpoint` {endpoint:?} is not an http(s) URL; write e.g. \"http://127.0.0.1:9000\""
            )));
        }
        if self.access_key_id_env.is_some() != self.secret_access_key_env.is_some() {
            return Err(ConfigError::Invalid(
                "`store.access-key-id-env` and `store.secret-access-key-env` go together; give both or neither".into(),
            ));
        }
        Ok(())
    }

    /// The location, with the credentials read from their variables now.
    pub fn location(&self) -> Result<Location, ConfigError> {
        let mut options = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            options.push(("aws_endpoint".to_string(), endpoint.clone()));
            if endpoint.starts_with("http://") {
                options.push(("aws_allow_http".to_string(), "true".to_string()));
            }
        }
        if let Some(region) = &self.region {
            options.push(("aws_region".to_string(), region.clone()));
        }
        for (var, key) in [
            (&self.access_key_id_env, "aws_access_key_id"),
            (&self.secret_access_key_env, "aws_secret_access_key"),
        ] {
            if let Some(var) = var {
                let value = std::env::var(var).map_err(|_| {
                    ConfigError::Invalid(format!(
                        "the memory config's store reads a credential from ${var}, which is not set"
                    ))
                })?;
                options.push((key.to_string(), value));
            }
        }
        Ok(Location::Store {
            uri: self.uri.trim_end_matches('/').to_string(),
            options,
        })
    }
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

    /// The store under this config: in `DATA_DIR/memory`, or where
    /// `[store]` says. The embedder is made on first use, so reads work (and
    /// say what is missing) on a machine without the model files.
    pub fn open(&self, data_dir: &Path) -> Result<Memory, ConfigError> {
        let location = match &self.store {
            Some(store) => store.location()?,
            None => Location::Dir(data_dir.join("memory")),
        };
        Ok(Memory::at(location, self.loader(data_dir), self.limits()))
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
        if let Some(store) = &config.store {
            store.check()?;
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

    #[test]
    fn a_store_section_names_an_s3_location_and_its_options() {
        let c = MemoryConfig::parse(
            "[store]\nuri = \"s3://mem/prod/\"\nendpoint = \"http://127.0.0.1:9\"\nregion = \"eu-west-1\"\n",
        )
        .unwrap();
        let Location::Store { uri, options } = c.store.unwrap().location().unwrap() else {
            panic!("an S3 location");
        };
        assert_eq!(uri, "s3://mem/prod");
        assert!(options.contains(&("aws_allow_http".into(), "true".into())));
        assert!(options.contains(&("aws_region".into(), "eu-west-1".into())));
        for (text, named) in [
            ("uri = \"/var/mem\"", "store.uri"),
            ("uri = \"s3://\"", "store.uri"),
            (
                "uri = \"s3://b\"\nendpoint = \"127.0.0.1:9\"",
                "store.endpoint",
            ),
            ("uri = \"s3://b\"\naccess-key-id-env = \"K\"", "go together"),
            ("uri = \"s3://b\"\nbucket = \"b\"", "bucket"),
        ] {
            let e = MemoryConfig::parse(&format!("[store]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{text}: {e}");
        }
        let unset = MemoryConfig::parse(
            "[store]\nuri = \"s3://b\"\naccess-key-id-env = \"WARDEN_TEST_NO_SUCH_VAR\"\nsecret-access-key-env = \"WARDEN_TEST_NO_SUCH_VAR\"\n",
        )
        .unwrap();
        let e = unset.store.unwrap().location().unwrap_err().to_string();
        assert!(e.contains("$WARDEN_TEST_NO_SUCH_VAR"), "{e}");
    }
}
