//! Embedders: text in, unit-length vectors out, in batches.
//!
//! - [`LocalEmbedder`]: all-MiniLM-L6-v2 (384-d) from the files `warden
//!   models fetch` puts in the data dir, run with candle's BERT: inputs cut
//!   at 256 tokens, mean pooling over the real tokens, L2 normalisation.
//! - [`OpenAiEmbedder`]: any OpenAI-compatible `/v1/embeddings` endpoint; the
//!   key comes from an environment variable and never appears in errors.
//!
//! Each has a [`Embedder::name`] that a memory table records with its
//! dimension, so vectors of different models are never mixed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use warden_api::BoxFuture;
use warden_llm::models::{self, MINILM};

/// Tokens an input is cut to: the model was trained on 256-token windows.
pub const MAX_TOKENS: usize = 256;
/// Texts embedded in one forward pass.
const BATCH: usize = 32;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// The embedder cannot work (model files missing, endpoint down...).
    #[error("embedder unavailable: {0}")]
    Unavailable(String),
    /// The input or the endpoint's answer cannot be used.
    #[error("embedding failed: {0}")]
    Invalid(String),
}

/// Turns texts into vectors of [`Embedder::dimension`] floats, one per text,
/// in order, each of unit length.
pub trait Embedder: Send + Sync {
    /// Identifies the model, e.g. `local/all-minilm-l6-v2`.
    fn name(&self) -> &str;
    fn dimension(&self) -> usize;
    fn embed<'a>(&'a self, texts: &'a [String])
    -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// all-MiniLM-L6-v2 in-process. Cheap to clone.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Local>,
}

struct Local {
    model: BertModel,
    tokenizer: Tokenizer,
    name: String,
    dimension: usize,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl LocalEmbedder {
    /// Loads the fetched model from `data_dir`.
    pub fn load(data_dir: &Path) -> Result<LocalEmbedder, EmbedError> {
        let file = |name: &str| {
            models::file(data_dir, &MINILM, name)
                .map_err(|e| EmbedError::Unavailable(e.to_string()))
        };
        let (config, tokenizer, weights) = (
            file("config.json")?,
            file("tokenizer.json")?,
            file("model.safetensors")?,
        );
        let load = |what: &Path, e: &dyn std::fmt::Display| {
            EmbedError::Unavailable(format!(
                "cannot load {}: {e}; run `warden models fetch` again",
                what.display()
            ))
        };
        let config_text = std::fs::read_to_string(&config).map_err(|e| load(&config, &e))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| load(&config, &e))?;
        let mut tok = Tokenizer::from_file(&tokenizer).map_err(|e| load(&tokenizer, &e))?;
        tok.with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..TruncationParams::default()
        }))
        .map_err(|e| load(&tokenizer, &e))?;
        tok.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let bytes = std::fs::read(&weights).map_err(|e| load(&weights, &e))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| load(&weights, &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| load(&weights, &e))?;
        Ok(LocalEmbedder {
            inner: Arc::new(Local {
                model,
                tokenizer: tok,
                name: format!("local/{}", MINILM.name),
                dimension: config.hidden_size,
            }),
        })
    }

    /// Embeds `texts` on this thread (CPU-bound: call from a blocking one).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            out.extend(self.batch(chunk)?);
        }
        Ok(out)
    }

    fn batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let failed = |e: &dyn std::fmt::Display| EmbedError::Invalid(e.to_string());
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .inner
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| failed(&e))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        let device = &Device::Cpu;
        let tensor =
            |data: Vec<u32>| Tensor::from_vec(data, (rows, width), device).map_err(|e| failed(&e));
        let ids = tensor(flat(&|e| e.get_ids()))?;
        let types = tensor(flat(&|e| e.get_type_ids()))?;
        let mask = tensor(flat(&|e| e.get_attention_mask()))?;
        let hidden = self
            .inner
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(|e| failed(&e))?;
        // Mean over the real tokens (padding masked out), then unit length.
        let pooled = (|| {
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        })()
        .map_err(|e: candle_core::Error| failed(&e))?;
        Ok(pooled)
    }
}

impl Embedder for LocalEmbedder {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let this = self.clone();
            let texts = texts.to_vec();
            tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
                .await
                .map_err(|e| EmbedError::Unavailable(format!("embedding task: {e}")))?
        })
    }
}

/// An OpenAI-compatible embeddings endpoint.
pub struct OpenAiEmbedder {
    api: warden_llm::JsonApi,
    model: String,
    name: String,
    dimension: usize,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("base_url", &self.api.base_url())
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// `base_url` up to `/v1`; `dimension` is what the model returns (the
    /// endpoint's answers are checked against it).
    pub fn new(
        base_url: &str,
        key: Option<String>,
        model: &str,
        dimension: usize,
        timeout: Duration,
    ) -> Result<OpenAiEmbedder, EmbedError> {
        Ok(OpenAiEmbedder {
            api: warden_llm::JsonApi::new(base_url, key, warden_llm::KeyHeader::Bearer, timeout)
                .map_err(|e| EmbedError::Unavailable(e.to_string()))?,
            model: model.to_string(),
            name: format!("openai/{model}"),
            dimension,
        })
    }

    async fn batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = serde_json::json!({"model": self.model, "input": texts});
        let v = self
            .api
            .post("/embeddings", &[], &body)
            .await
            .map_err(|e| EmbedError::Unavailable(format!("{}: {e}", self.api.base_url())))?;
        let data = v["data"]
            .as_array()
            .ok_or_else(|| EmbedError::Invalid("the answer has no `data` list".into()))?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (i, item) in data.iter().enumerate() {
            let index = item["index"].as_u64().map_or(i, |n| n as usize);
            let vector: Vec<f32> = item["embedding"]
                .as_array()
                .ok_or_else(|| EmbedError::Invalid(format!("item {index} has no `embedding`")))?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    EmbedError::Invalid(format!(
                        "item {index}: the embedding is not a list of numbers"
                    ))
                })?;
            if vector.len() != self.dimension {
                return Err(EmbedError::Invalid(format!(
                    "{} returned {} dimensions, not the configured {}; fix `dimension` in the config",
                    self.name,
                    vector.len(),
                    self.dimension
                )));
            }
            let slot = out.get_mut(index).ok_or_else(|| {
                EmbedError::Invalid(format!("item index {index} is out of range"))
            })?;
            *slot = Some(normalized(vector));
        }
        out.into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| EmbedError::Invalid(format!("no embedding for input {i}")))
            })
            .collect()
    }
}

impl Embedder for OpenAiEmbedder {
    fn name(&self) -> &str {
        &self.name
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(256) {
                out.extend(self.batch(chunk).await?);
            }
            Ok(out)
        })
    }
}

/// `v` scaled to unit length (cosine and dot product then agree).
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// The cosine similarity of two unit vectors.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
