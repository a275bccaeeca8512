//! The router: which model answers a request, and everything around the
//! answer — aliases and fallback chains, retries with backoff and jitter
//! (honouring Retry-After), a circuit breaker per provider, `private`
//! requests kept local, prices, budgets and the usage ledger, and schema
//! validation of structured answers.
//!
//! ```toml
//! version = 1
//! default = "fast"                      # used when a request names no model
//!
//! [providers.openai]
//! kind = "openai"
//! base-url = "https://api.openai.com/v1"
//! api-key-env = "OPENAI_API_KEY"
//!
//! [providers.local]
//! kind = "local"                        # SmolLM2 from `warden models fetch`
//!
//! [aliases]
//! fast = ["openai/gpt-4o-mini", "local/smollm2-135m-instruct"]   # a fallback chain
//!
//! [roles]
//! planner = "fast"                      # default model per role
//!
//! [prices."openai/gpt-4o-mini"]         # US dollars per million tokens
//! input = 0.15
//! output = 0.60
//!
//! [budgets]
//! call-tokens = 8000
//! tenant-cost = 5.0
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::Deserialize;

use warden_api::BoxFuture;
use warden_api::budget::{Ask, BudgetSpent, Hold, UsageRecord};
use warden_api::llm::{Caller, ChatRequest, Completion, LlmError, Models};

use crate::ConfigError;
use crate::provider::{Provider, ProviderError};
use crate::usage::{Caps, Ledger, LedgerHold};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LlmConfig {
    pub version: u32,
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(default)]
    pub aliases: BTreeMap<String, Chain>,
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
    #[serde(default)]
    pub budgets: Budgets,
}

/// One model, or a fallback chain tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Chain {
    One(String),
    Many(Vec<String>),
}

impl Chain {
    fn refs(&self) -> Vec<String> {
        match self {
            Chain::One(s) => vec![s.clone()],
            Chain::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderConfig {
    #[serde(rename_all = "kebab-case")]
    Openai {
        base_url: String,
        #[serde(default)]
        api_key_env: Option<String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    #[serde(rename_all = "kebab-case")]
    Anthropic {
        #[serde(default = "anthropic_url")]
        base_url: String,
        #[serde(default)]
        api_key_env: Option<String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Local {
        /// A file path, or the name of a fetched model.
        #[serde(default)]
        model: Option<String>,
    },
    Replay {
        cassette: PathBuf,
    },
    Record {
        /// The provider whose answers are recorded.
        inner: String,
        cassette: PathBuf,
    },
}

fn anthropic_url() -> String {
    "https://api.anthropic.com".into()
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// US dollars per million input tokens.
    pub input: f64,
    pub output: f64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            base_ms: 250,
            max_ms: 8000,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    pub cooldown_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// Caps; unset means uncapped.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Budgets {
    pub call_tokens: Option<u64>,
    pub call_cost: Option<f64>,
    pub run_tokens: Option<u64>,
    pub run_cost: Option<f64>,
    pub tenant_tokens: Option<u64>,
    pub tenant_cost: Option<f64>,
}

impl LlmConfig {
    /// The embedded default: the local model, nothing else.
    pub fn local_only() -> LlmConfig {
        let mut providers = BTreeMap::new();
        providers.insert("local".to_string(), ProviderConfig::Local { model: None });
        LlmConfig {
            version: 1,
            default: Some(format!("local/{}", crate::models::SMOLLM2.name)),
            providers,
            aliases: BTreeMap::new(),
            roles: BTreeMap::new(),
            prices: BTreeMap::new(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            budgets: Budgets::default(),
        }
    }

    /// The config a warden process uses: `explicit` (a flag), else
    /// `$WARDEN_LLM_CONFIG`, else `DATA_DIR/llm.toml` if there is one, else
    /// [`LlmConfig::local_only`].
    pub fn find(
        explicit: Option<&Path>,
        data_dir: Option<&Path>,
    ) -> Result<LlmConfig, ConfigError> {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("WARDEN_LLM_CONFIG").map(PathBuf::from))
            .or_else(|| data_dir.map(|d| d.join("llm.toml")).filter(|p| p.is_file()));
        match path {
            Some(path) => LlmConfig::load(&path),
            None => Ok(LlmConfig::local_only()),
        }
    }

    pub fn load(path: &Path) -> Result<LlmConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            what: "LLM config",
            path: path.to_path_buf(),
            error: e.to_string(),
        })?;
        let mut config = LlmConfig::parse(&text, &path.display().to_string())?;
        // Cassettes are relative to the config file.
        let base = path.parent().unwrap_or(Path::new("."));
        for provider in config.providers.values_mut() {
            if let ProviderConfig::Replay { cassette } | ProviderConfig::Record { cassette, .. } =
                provider
            {
                *cassette = base.join(&*cassette);
            }
        }
        Ok(config)
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<LlmConfig, ConfigError> {
        let config: LlmConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Invalid(format!("LLM config {origin} is not valid: {e}")))?;
        if config.version != 1 {
            return Err(ConfigError::Invalid(format!(
                "LLM config {origin}: `version = {}` is not one this warden reads; set `version = 1`",
                config.version
            )));
        }
        Ok(config)
    }
}

struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("aliases", &self.config.aliases.keys().collect::<Vec<_>>())
            .field("default", &self.config.default)
            .finish_non_exhaustive()
    }
}

pub struct Router {
    config: LlmConfig,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    breakers: Mutex<BTreeMap<String, Breaker>>,
    ledger: Ledger,
    /// Keys to scrub from every message that leaves the router.
    keys: Vec<String>,
}

impl Router {
    /// Builds the providers of `config`. `data_dir` holds fetched models and
    /// the usage ledger (`None`: ledger in memory only).
    pub fn new(config: LlmConfig, data_dir: Option<&Path>) -> Result<Router, ConfigError> {
        Router::with_keys(config, data_dir, |var| std::env::var(var).ok())
    }

    /// As [`Router::new`], reading the API keys the config names through
    /// `key` instead of the process environment.
    pub fn with_keys(
        config: LlmConfig,
        data_dir: Option<&Path>,
        key: impl Fn(&str) -> Option<String>,
    ) -> Result<Router, ConfigError> {
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        let mut keys = Vec::new();
        // Plain providers first, so that `record` can wrap one of them.
        for (name, pc) in &config.providers {
            // A remote provider's key (from the variable the config names)
            // and request timeout; the key is remembered for redaction.
            let mut remote = |env: &Option<String>,
                              ms: &Option<u64>|
             -> Result<(Option<String>, Duration), ConfigError> {
                let key = match env {
                    None => None,
                    Some(var) => Some(key(var).ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "provider {name}: environment variable {var} (its API key) is not set"
                        ))
                    })?),
                };
                keys.extend(key.clone());
                Ok((key, Duration::from_millis(ms.unwrap_or(60_000))))
            };
            let provider: Arc<dyn Provider> = match pc {
                ProviderConfig::Openai {
                    base_url,
                    api_key_env,
                    timeout_ms,
                } => {
                    let (key, timeout) = remote(api_key_env, timeout_ms)?;
                    Arc::new(crate::openai::OpenAi::new(base_url, key, timeout)?)
                }
                ProviderConfig::Anthropic {
                    base_url,
                    api_key_env,
                    timeout_ms,
                } => {
                    let (key, timeout) = remote(api_key_env, timeout_ms)?;
                    Arc::new(crate::anthropic::Anthropic::new(base_url, key, timeout)?)
                }
                ProviderConfig::Local { model } => {
                    let path = local_model_path(model.as_deref(), data_dir);
                    Arc::new(crate::local::LocalProvider::new(path))
                }
                ProviderConfig::Replay { cassette } => {
                    Arc::new(crate::replay::Replay::load(cassette)?)
                }
                ProviderConfig::Record { .. } => continue,
            };
            providers.insert(name.clone(), provider);
        }
        for (name, pc) in &config.providers {
            if let ProviderConfig::Record { inner, cassette } = pc {
                let Some(wrapped) = providers.remove(inner) else {
                    return Err(ConfigError::Invalid(format!(
                        "provider {name} records provider {inner:?}, which is not defined (or is itself a recorder)"
                    )));
                };
                providers.insert(inner.clone(), wrapped.clone());
                providers.insert(
                    name.clone(),
                    Arc::new(crate::replay::Record::new(
                        Box::new(Shared(wrapped)),
                        cassette,
                    )),
                );
            }
        }
        let ledger = match data_dir {
            Some(dir) => Ledger::open(dir),
            None => Ledger::in_memory(),
        };
        Ok(Router {
            config,
            providers,
            breakers: Mutex::new(BTreeMap::new()),
            ledger,
            keys,
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// `provider/model` targets for a request's model name, in order.
    fn targets(&self, name: &str, caller: &Caller) -> Result<Vec<(String, String)>, LlmError> {
        let name = if name.is_empty() {
            self.default_for(caller)?
        } else {
            name.to_string()
        };
        if let Some(allowed) = &caller.allowed
            && !allowed.contains(&name)
        {
            return Err(LlmError::Denied(format!(
                "model {name:?} is not granted to plugin {} (granted: {})",
                caller.plugin,
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let refs = match self.config.aliases.get(&name) {
            Some(chain) => chain.refs(),
            // A provider's name alone: its own model, for a local one.
            None if self.providers.get(&name).is_some_and(|p| p.is_local()) => {
                vec![format!("{name}/{}", crate::models::SMOLLM2.name)]
            }
            None if self.providers.contains_key(&name) => {
                return Err(LlmError::InvalidRequest(format!(
                    "provider {name} serves many models; name one as {name}/MODEL, or an alias ({})",
                    self.config
                        .aliases
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            None => vec![name.clone()],
        };
        refs.into_iter()
            .map(|r| match r.split_once('/') {
                Some((p, m)) if self.providers.contains_key(p) => Ok((p.to_string(), m.to_string())),
                _ => Err(LlmError::InvalidRequest(format!(
                    "unknown model {r:?}: use an alias ({}) or provider/model with a configured provider ({})",
                    self.config.aliases.keys().cloned().collect::<Vec<_>>().join(", "),
                    self.providers.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            })
            .collect()
    }

    /// The model of a request that names none: the caller's role's default,
    /// else the config's default — unless the caller may not use it, then
    /// the first model granted to the caller.
    fn default_for(&self, caller: &Caller) -> Result<String, LlmError> {
        let configured = caller
            .role
            .as_ref()
            .and_then(|r| self.config.roles.get(r))
            .or(self.config.default.as_ref());
        match (&caller.allowed, configured) {
            (Some(allowed), Some(name)) if !allowed.contains(name) && !allowed.is_empty() => {
                Ok(allowed[0].clone())
            }
            (Some(allowed), None) if !allowed.is_empty() => Ok(allowed[0].clone()),
            (_, Some(name)) => Ok(name.clone()),
            (_, None) => Err(LlmError::InvalidRequest(
                "the request names no model and the LLM config sets no `default`".into(),
            )),
        }
    }

    /// Answers `request` for `caller`.
    pub async fn complete(
        &self,
        request: &ChatRequest,
        caller: &Caller,
    ) -> Result<Completion, LlmError> {
        let mut targets = self.targets(&request.model, caller)?;
        if request.private {
            let asked: Vec<String> = targets.iter().map(|(p, m)| format!("{p}/{m}")).collect();
            targets.retain(|(p, _)| self.providers[p].is_local());
            if targets.is_empty() {
                return Err(LlmError::Denied(format!(
                    "a private request may only go to a local provider, and {} is not one; ask a model of a `kind = \"local\"` provider",
                    asked.join(", ")
                )));
            }
        }
        let validator = match &request.response_schema {
            Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| {
                LlmError::InvalidRequest(format!(
                    "the response schema is not a valid JSON Schema: {e}"
                ))
            })?),
            None => None,
        };
        let mut request = request.clone();
        // Held until this function returns, after the completion is charged.
        let _reservation = self.reserve(&mut request, caller, &targets)?;

        let mut last = String::from("no provider tried");
        for (provider_name, model) in &targets {
            if self.is_open(provider_name) {
                last = format!("{provider_name}: circuit open after repeated failures");
                tracing::info!(provider = %provider_name, "skipping provider: circuit open");
                continue;
            }
            let provider = &self.providers[provider_name];
            for attempt in 1..=self.config.retry.max_attempts.max(1) {
                let started = Instant::now();
                let result = provider.complete(model, &request).await;
                // A local model at temperature 0 gives the same answer again:
                // a schema failure is then not worth a retry.
                let deterministic =
                    provider.is_local() && request.temperature.unwrap_or(0.0) <= 0.0;
                let outcome =
                    result.and_then(|c| check_schema(c, validator.as_ref(), !deterministic));
                match outcome {
                    Ok(mut completion) => {
                        self.record_success(provider_name);
                        completion.provider = provider_name.clone();
                        completion.cost = self.price(provider_name, model, &completion);
                        tracing::info!(
                            provider = %provider_name, model = %model, tenant = %caller.tenant, plugin = %caller.plugin,
                            input_tokens = completion.usage.input_tokens, output_tokens = completion.usage.output_tokens,
                            cost = completion.cost, ms = started.elapsed().as_millis() as u64, "completion"
                        );
                        self.charge(&completion, caller);
                        return Ok(completion);
                    }
                    Err(e) => {
                        let message = self.redact(&e.message);
                        tracing::info!(provider = %provider_name, attempt, retryable = e.retryable, error = %message, "completion failed");
                        last = format!("{provider_name}/{model}: {message}");
                        self.record_failure(provider_name);
                        if !e.retryable
                            || attempt == self.config.retry.max_attempts
                            || self.is_open(provider_name)
                        {
                            break;
                        }
                        tokio::time::sleep(self.backoff(attempt, e.retry_after)).await;
                    }
                }
            }
        }
        Err(LlmError::Unavailable(format!(
            "no model answered (tried {}); last error: {last}",
            targets
                .iter()
                .map(|(p, m)| format!("{p}/{m}"))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(Duration::from_secs(60));
        }
        let cap = self.config.retry.max_ms;
        let exp = self
            .config
            .retry
            .base_ms
            .saturating_mul(1u64 << (attempt - 1).min(20))
            .min(cap);
        // Full jitter: anywhere in [exp/2, exp].
        let ms = rand::rng().random_range(exp / 2..=exp.max(1));
        Duration::from_millis(ms)
    }

    fn is_open(&self, provider: &str) -> bool {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = breakers.get_mut(provider) else {
            return false;
        };
        match b.open_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // Half-open: the next attempt goes through, and one more
                // failure opens the circuit again.
                b.open_until = None;
                b.failures = self.config.breaker.failures.saturating_sub(1);
                false
            }
            None => false,
        }
    }

    fn record_failure(&self, provider: &str) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let b = breakers.entry(provider.to_string()).or_insert(Breaker {
            failures: 0,
            open_until: None,
        });
        b.failures += 1;
        if b.failures >= self.config.breaker.failures.max(1) && b.open_until.is_none() {
            b.open_until =
                Some(Instant::now() + Duration::from_millis(self.config.breaker.cooldown_ms));
            tracing::warn!(provider, "circuit opened");
        }
    }

    fn record_success(&self, provider: &str) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        breakers.remove(provider);
    }

    fn price(&self, provider: &str, model: &str, c: &Completion) -> f64 {
        match self.price_of(provider, model) {
            Some(p) => {
                (c.usage.input_tokens as f64 * p.input + c.usage.output_tokens as f64 * p.output)
                    / 1e6
            }
            None => 0.0,
        }
    }

    /// The price of `provider/model`, else the config's `"*"` price; a
    /// local model costs nothing unless priced.
    fn price_of(&self, provider: &str, model: &str) -> Option<Price> {
        self.config
            .prices
            .get(&format!("{provider}/{model}"))
            .or_else(|| self.config.prices.get("*"))
            .copied()
            .or_else(|| {
                self.providers
                    .get(provider)
                    .filter(|p| p.is_local())
                    .map(|_| Price {
                        input: 0.0,
                        output: 0.0,
                    })
            })
    }

    /// Fits the request to every budget before it is sent: its input is
    /// estimated from every part (messages, tool calls, tools, schema), its
    /// answer's `max_tokens` is capped to what the tightest budget leaves
    /// (in tokens, and in dollars at the dearest target's price), and that
    /// much is held against the tenant, the run and the caller's allowance
    /// until the completion is charged, so completions in flight together
    /// cannot overshoot either. Under a cost budget, a remote model without
    /// a price is refused: it is never free.
    fn reserve(
        &self,
        request: &mut ChatRequest,
        caller: &Caller,
        targets: &[(String, String)],
    ) -> Result<Reservation<'_>, LlmError> {
        let b = self.config.budgets;
        let spent = |e: BudgetSpent| LlmError::BudgetExceeded(e.to_string());
        if let Some(allowance) = &caller.allowance {
            allowance.check().map_err(spent)?;
        }
        let costs = b.call_cost.is_some()
            || b.run_cost.is_some()
            || b.tenant_cost.is_some()
            || caller.allowance.as_ref().is_some_and(|a| a.caps_cost());
        let (mut input_price, mut output_price) = (0.0f64, 0.0f64);
        for (provider, model) in targets {
            match self.price_of(provider, model) {
                Some(price) => {
                    input_price = input_price.max(price.input);
                    output_price = output_price.max(price.output);
                }
                None if costs => {
                    return Err(LlmError::Denied(format!(
                        "{provider}/{model} has no price in the LLM config and a cost budget applies, so its cost could not be counted; add `[prices.\"{provider}/{model}\"]` (or a `[prices.\"*\"]` default)"
                    )));
                }
                None => {}
            }
        }
        let estimate = estimate_tokens(request);
        let mut ask = Ask {
            input_tokens: estimate,
            max_output: request.max_tokens.map_or(u64::MAX, u64::from),
            input_price,
            output_price,
        };
        if let Some(cap) = b.call_tokens {
            // About four characters a token: enough to refuse what cannot fit.
            if estimate >= cap {
                return Err(LlmError::BudgetExceeded(format!(
                    "the request is about {estimate} tokens; the per-call budget is {cap}"
                )));
            }
            ask.fit("the per-call budget", Some(cap), None)
                .map_err(spent)?;
        }
        if let Some(cap) = b.call_cost {
            ask.fit("the per-call budget", None, Some(cap))
                .map_err(spent)?;
        }
        let caps = Caps {
            tenant_tokens: b.tenant_tokens,
            tenant_cost: b.tenant_cost,
            run_tokens: b.run_tokens,
            run_cost: b.run_cost,
        };
        let ledger = self
            .ledger
            .reserve(&caller.tenant, caller.run.as_deref(), caps, &mut ask)
            .map_err(spent)?;
        let allowance = match &caller.allowance {
            Some(allowance) => Some(allowance.reserve(&mut ask).map_err(spent)?),
            None => None,
        };
        if ask.max_output != u64::MAX {
            request.max_tokens = Some(u32::try_from(ask.max_output).unwrap_or(u32::MAX));
        }
        Ok(Reservation {
            _ledger: ledger,
            _allowance: allowance,
        })
    }

    fn charge(&self, c: &Completion, caller: &Caller) {
        let record = UsageRecord {
            ts: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            tenant: caller.tenant.clone(),
            plugin: caller.plugin.clone(),
            run: caller.run.clone(),
            provider: c.provider.clone(),
            model: c.model.clone(),
            input_tokens: c.usage.input_tokens,
            output_tokens: c.usage.output_tokens,
            cost: c.cost,
        };
        if let Some(allowance) = &caller.allowance {
            allowance.charge(&record);
        }
        self.ledger.charge(record);
        if let Some(cap) = self.config.budgets.call_cost
            && c.cost > cap
        {
            tracing::warn!(
                cost = c.cost,
                cap,
                "a completion cost more than the per-call budget"
            );
        }
    }

    fn redact(&self, message: &str) -> String {
        self.keys
            .iter()
            .fold(message.to_string(), |m, k| crate::redact(&m, Some(k)))
    }
}

/// A structured answer must parse and satisfy its schema; otherwise the
/// attempt failed (and is worth another try).
fn check_schema(
    c: Completion,
    validator: Option<&jsonschema::Validator>,
    retryable: bool,
) -> Result<Completion, ProviderError> {
    let Some(validator) = validator else {
        return Ok(c);
    };
    let fail = |message: String| ProviderError {
        retryable,
        retry_after: None,
        message,
    };
    let value: serde_json::Value = serde_json::from_str(c.text.trim()).map_err(|e| {
        fail(format!(
            "the answer is not JSON ({e}): {}",
            ellipsis(&c.text, 200)
        ))
    })?;
    if let Err(e) = validator.validate(&value) {
        return Err(fail(format!(
            "the answer does not match the schema ({e} at {}): {}",
            e.instance_path(),
            ellipsis(&c.text, 200)
        )));
    }
    Ok(c)
}

/// The first `max` characters of `text`, marked when cut.
fn ellipsis(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn local_model_path(model: Option<&str>, data_dir: Option<&Path>) -> PathBuf {
    match model {
        Some(m) if m.ends_with(".gguf") => PathBuf::from(m),
        _ => data_dir
            .map(|d| crate::models::model_dir(d, &crate::models::SMOLLM2).join("model.gguf"))
            .unwrap_or_else(|| PathBuf::from("model.gguf")),
    }
}

impl Models for Router {
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Completion, LlmError>> {
        Box::pin(Router::complete(self, request, caller))
    }
}

/// What a completion in flight holds of the budgets.
struct Reservation<'a> {
    _ledger: LedgerHold<'a>,
    _allowance: Option<Hold>,
}

/// Every part of a request, in tokens, about: four ASCII characters a
/// token, and a token for every other character (tokenizers split
/// non-English text and noise finely), plus a few per message.
pub fn estimate_tokens(request: &ChatRequest) -> u64 {
    fn text(s: &str) -> u64 {
        let ascii = s.bytes().filter(u8::is_ascii).count() as u64;
        let other = s.chars().filter(|c| !c.is_ascii()).count() as u64;
        ascii / 4 + other + 1
    }
    let mut tokens = 0u64;
    for m in &request.messages {
        tokens += 4 + text(&m.content);
        for call in &m.tool_calls {
            tokens += text(&call.id) + text(&call.name) + text(&call.arguments);
        }
        tokens += m.tool_call_id.as_deref().map_or(0, text);
    }
    for tool in &request.tools {
        tokens += text(&tool.name) + text(&tool.description) + text(&tool.parameters.to_string());
    }
    if let Some(schema) = &request.response_schema {
        tokens += text(&schema.to_string());
    }
    tokens + request.stop.iter().map(|s| text(s)).sum::<u64>()
}

/// A provider shared between its own name and a recorder.
struct Shared(Arc<dyn Provider>);

impl Provider for Shared {
    fn is_local(&self) -> bool {
        self.0.is_local()
    }

    fn complete<'a>(
        &'a self,
        model: &'a str,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        self.0.complete(model, request)
    }
}
