//! What an operator does to a server's control state — tenants, keys, the
//! audit log — in one place, so that `warden tenants …` in a shell and the
//! admin API do exactly the same, checked the same way and audited the same
//! way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::audit::{self, AuditEvent, AuditLog, Chain, Verified};
use crate::control::{ControlError, ControlStore, SessionRecord};
use crate::key::{self, KeyHasher, KeyRecord, NewKey, Scope};
use crate::sqlite::SqliteControl;
use crate::tenant::{self, Quotas, TenantRecord};

/// The audit log of what no tenant owns (operator keys).
pub const OPERATOR_LOG: &str = "@operator";

/// Why an operator's request was not done. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<ControlError> for OperatorError {
    fn from(e: ControlError) -> OperatorError {
        match e {
            ControlError::Conflict(m) => OperatorError::Conflict(m),
            ControlError::Store(m) => OperatorError::Internal(m),
        }
    }
}

impl From<audit::AuditError> for OperatorError {
    fn from(e: audit::AuditError) -> OperatorError {
        OperatorError::Internal(e.to_string())
    }
}

/// Who acted: a key (by id), or the operator at the server's shell.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Shell,
    Key(&'a str),
}

impl Actor<'_> {
    fn id(&self) -> Option<&str> {
        match self {
            Actor::Shell => None,
            Actor::Key(id) => Some(id),
        }
    }
}

/// A tenant to add.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    pub name: String,
    /// The policy's TOML text.
    pub policy: Option<String>,
    /// Plugin names; empty or `*` for every plugin the server loads.
    pub plugins: Vec<String>,
    pub quotas: Option<Quotas>,
}

/// A key to create.
#[derive(Debug, Clone, Default)]
pub struct KeySpec {
    /// `None` for an operator key, which must have scope `admin` alone.
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    /// Seconds from now.
    pub expires_in: Option<i64>,
    pub label: Option<String>,
}

/// A key as listed: everything but its hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub id: String,
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    pub label: Option<String>,
}

impl From<KeyRecord> for KeyInfo {
    fn from(k: KeyRecord) -> KeyInfo {
        KeyInfo {
            id: k.id,
            tenant: k.tenant,
            scopes: k.scopes,
            created: k.created,
            expires: k.expires,
            revoked: k.revoked,
            label: k.label,
        }
    }
}

/// Who a valid key speaks for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    /// `None` for an operator key.
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a key was not accepted. The answer to the client is the same 401
/// for each; the reason is for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token without a key's shape.
    Malformed,
    /// No key has that id, or the secret does not match.
    Unknown,
    /// Revoked or expired (and the tenant it belongs to).
    Unusable {
        reason: &'static str,
        tenant: Option<String>,
    },
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The server's own files in the data dir.
pub fn server_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server")
}

/// The control state of one server and the means to change it.
pub struct Operator {
    data_dir: PathBuf,
    control: Arc<dyn ControlStore>,
    keys: KeyHasher,
    chain: Chain,
    audit: AuditLog,
    /// When each unusable key's refusal was last recorded: at most one
    /// entry a minute per key, so a client retrying a revoked key cannot
    /// flood its tenant's log.
    refusals: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a dashboard session lasts.
pub const SESSION_SECS: i64 = 12 * 3600;
/// What a session cookie's value starts with.
const SESSION_PREFIX: &str = "wds_";

/// How often one unusable key's refusals are recorded.
const REFUSAL_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// The embedded default: SQLite and the server's secret in
    /// `DATA_DIR/server/`, made on first use.
    pub fn open(data_dir: &Path) -> Result<Operator, OperatorError> {
        let dir = server_dir(data_dir);
        let secret = load_or_create_secret(&dir.join("secret"))
            .map_err(|e| OperatorError::Internal(e.to_string()))?;
        let control = Arc::new(SqliteControl::open(&dir.join("control.sqlite"))?);
        Ok(Operator::with_store(data_dir, &secret, control))
    }

    /// A cluster node's: the control state and the secret in the
    /// cluster's JetStream bucket, so that every node checks the same keys.
    pub async fn open_cluster(
        data_dir: &Path,
        nats: &warden_cluster::Nats,
        replicas: usize,
    ) -> Result<Operator, OperatorError> {
        let control = crate::kv::KvControl::open(nats, replicas).await?;
        let secret = control.secret().await?;
        let mut operator = Operator::with_store(data_dir, &secret, Arc::new(control));
        operator.audit = AuditLog::on_cluster(
            data_dir,
            operator.chain.clone(),
            operator.control.clone(),
            nats,
            replicas,
        );
        Ok(operator)
    }

    /// An operator over any control store (a cluster's).
    pub fn with_store(
        data_dir: &Path,
        secret: &[u8; 32],
        control: Arc<dyn ControlStore>,
    ) -> Operator {
        let chain = Chain::new(secret);
        Operator {
            data_dir: data_dir.to_path_buf(),
            audit: AuditLog::new(data_dir, chain.clone(), control.clone()),
            control,
            keys: KeyHasher::new(secret),
            chain,
            refusals: Default::default(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn control(&self) -> &dyn ControlStore {
        self.control.as_ref()
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Records `event` in `tenant`'s log. A log that cannot be written is
    /// reported, not fatal to the request that caused it.
    pub async fn record(&self, tenant: &str, event: AuditEvent) {
        if let Err(e) = self.audit.record(tenant, event).await {
            tracing::error!(tenant, error = %e, "cannot write the audit log");
        }
    }

    pub async fn add_tenant(
        &self,
        new: NewTenant,
        by: Actor<'_>,
    ) -> Result<TenantRecord, OperatorError> {
        let name =
            tenant::check_name(&new.name).map_err(|e| OperatorError::BadInput(e.to_string()))?;
        let root = tenant::root(&self.data_dir, name.as_str());
        let policy = match &new.policy {
            Some(text) => Some(
                tenant::policy(text, &root).map_err(|e| OperatorError::BadInput(e.to_string()))?,
            ),
            None => None,
        };
        let quotas = new.quotas.unwrap_or_default();
        quotas
            .check()
            .map_err(|e| OperatorError::BadInput(format!("quotas: {e}")))?;
        let mut plugins: Vec<String> = new.plugins.iter().map(|p| p.trim().to_string()).collect();
        plugins.retain(|p| !p.is_empty());
        if plugins.is_empty() {
            plugins.push("*".into());
        }
        for plugin in &plugins {
            let ok = plugin == "*"
                || plugin
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(OperatorError::BadInput(format!(
                    "plugins: {plugin:?} is not a plugin name; use the names `warden plugin inspect` shows, or `*`"
                )));
            }
        }
        let record = TenantRecord {
            name: name.as_str().to_string(),
            policy: new.policy.clone(),
            plugins,
            quotas,
            created: now(),
        };
        self.control.add_tenant(&record).await?;
        // The directories its policy grants exist, so its calls can open
        // them; they are the tenant's, under its root.
        let mut dirs = vec![tenant::files(&root)];
        if let Some(policy) = &policy {
            let grants =
                std::iter::once(&policy.grant).chain(policy.plugins.values().map(|p| &p.grant));
            dirs.extend(grants.flat_map(|g| g.dirs.iter().map(|d| d.host.clone())));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).map_err(|e| {
                OperatorError::Internal(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        self.record(
            &record.name,
            AuditEvent::new(
                "tenant.add",
                by.id(),
                "ok",
                json!({ "plugins": record.plugins, "quotas": record.quotas, "policy": record.policy }),
            ),
        )
        .await;
        Ok(record)
    }

    /// Removes a tenant, revokes its keys and moves its data aside (to
    /// `tenants/.removed/NAME-TIME`), so a tenant added later under the
    /// same name starts empty.
    pub async fn remove_tenant(&self, name: &str, by: Actor<'_>) -> Result<PathBuf, OperatorError> {
        self.tenant(name).await?;
        let at = now();
        self.record(
            name,
            AuditEvent::new("tenant.remove", by.id(), "ok", json!({})),
        )
        .await;
        if !self.control.remove_tenant(name, at).await? {
            return Err(no_tenant(name));
        }
        let root = tenant::root(&self.data_dir, name);
        let removed = self
            .data_dir
            .join("tenants")
            .join(".removed")
            .join(format!("{name}-{at}"));
        if root.exists() {
            std::fs::create_dir_all(removed.parent().unwrap_or(&self.data_dir))
                .and_then(|()| std::fs::rename(&root, &removed))
                .map_err(|e| {
                    OperatorError::Internal(format!("cannot move {} aside: {e}", root.display()))
                })?;
        }
        // Its memories (kept by the memory store under DATA_DIR/memory)
        // go with it.
        let memories = self.data_dir.join("memory").join(name);
        if memories.exists() {
            std::fs::create_dir_all(&removed)
                .and_then(|()| std::fs::rename(&memories, removed.join("memory")))
                .map_err(|e| {
                    OperatorError::Internal(format!(
                        "cannot move {} aside: {e}",
                        memories.display()
                    ))
                })?;
        }
        Ok(removed)
    }

    pub async fn tenant(&self, name: &str) -> Result<TenantRecord, OperatorError> {
        self.control
            .tenant(name)
            .await?
            .ok_or_else(|| no_tenant(name))
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRecord>, OperatorError> {
        Ok(self.control.tenants().await?)
    }

    /// Creates a key; the token in the result is the only copy.
    pub async fn create_key(
        &self,
        spec: KeySpec,
        by: Actor<'_>,
    ) -> Result<(NewKey, KeyInfo), OperatorError> {
        let mut scopes = spec.scopes.clone();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(OperatorError::BadInput(
                "a key needs at least one scope; give --scope tools:call (or others: runs:read, runs:write, exec, memory:read, memory:write, audit:read)".into(),
            ));
        }
        match &spec.tenant {
            Some(name) => {
                self.tenant(name).await?;
                if scopes.contains(&Scope::Admin) {
                    return Err(OperatorError::BadInput(
                        "a tenant's key cannot have scope admin; create an operator key with --admin".into(),
                    ));
                }
            }
            None if scopes != [Scope::Admin] => {
                return Err(OperatorError::BadInput(
                    "a key without a tenant is an operator key, whose only scope is admin; give --tenant NAME for the others".into(),
                ));
            }
            None => {}
        }
        if let Some(label) = &spec.label
            && (label.len() > 200 || label.chars().any(char::is_control))
        {
            return Err(OperatorError::BadInput(
                "a label is at most 200 characters, none of them control characters".into(),
            ));
        }
        let created = now();
        let expires = match spec.expires_in {
            Some(seconds) if seconds <= 0 => {
                return Err(OperatorError::BadInput(
                    "expiry must be in the future".into(),
                ));
            }
            Some(seconds) => Some(created.saturating_add(seconds)),
            None => None,
        };
        let new = NewKey::generate();
        let record = KeyRecord {
            id: new.id.clone(),
            tenant: spec.tenant.clone(),
            hash: self.keys.hash(new.secret()),
            scopes,
            created,
            expires,
            revoked: None,
            label: spec.label,
        };
        self.control.add_key(&record).await?;
        let log = record.tenant.as_deref().unwrap_or(OPERATOR_LOG);
        self.record(
            log,
            AuditEvent::new(
                "key.create",
                by.id(),
                "ok",
                json!({ "id": record.id, "scopes": record.scopes, "expires": record.expires }),
            ),
        )
        .await;
        Ok((new, record.into()))
    }

    /// The keys of `tenant` (`None`: all), without their hashes.
    pub async fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, OperatorError> {
        if let Some(name) = tenant {
            self.tenant(name).await?;
        }
        Ok(self
            .control
            .keys(tenant)
            .await?
            .into_iter()
            .map(KeyInfo::from)
            .collect())
    }

    /// Revokes key `id`. With `tenant`, only a key of that tenant (an id
    /// of another tenant's key is not found).
    pub async fn revoke_key(
        &self,
        id: &str,
        tenant: Option<&str>,
        by: Actor<'_>,
    ) -> Result<(), OperatorError> {
        let not_found =
            || OperatorError::NotFound(format!("no key {id:?}; `warden keys list` shows them"));
        let record = self.control.key(id).await?.ok_or_else(not_found)?;
        if tenant.is_some() && record.tenant.as_deref() != tenant {
            return Err(not_found());
        }
        self.control.revoke_key(id, now()).await?;
        let log = record.tenant.as_deref().unwrap_or(OPERATOR_LOG);
        self.record(
            log,
            AuditEvent::new("key.revoke", by.id(), "ok", json!({ "id": id })),
        )
        .await;
        Ok(())
    }

    /// Who `authorization` (an `Authorization` header's value) speaks for.
    /// A refused known key is recorded in its tenant's log.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Refusal> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Refusal::Missing)?;
        let (id, secret) = key::parse(token).ok_or(Refusal::Malformed)?;
        let record = match self.control.key(id).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(Refusal::Unknown),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the control store to check a key");
                return Err(Refusal::Unknown);
            }
        };
        if !self.keys.matches(secret, &record.hash) {
            return Err(Refusal::Unknown);
        }
        if let Some(reason) = record.refusal(now()) {
            let due = {
                let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
                let now = std::time::Instant::now();
                let due = refusals
                    .get(id)
                    .is_none_or(|at| now.duration_since(*at) >= REFUSAL_EVERY);
                if due {
                    refusals.insert(id.to_string(), now);
                }
                due
            };
            if due {
                let log = record.tenant.as_deref().unwrap_or(OPERATOR_LOG);
                self.record(
                    log,
                    AuditEvent::new(
                        "key.refused",
                        Some(id),
                        "denied",
                        json!({ "reason": reason }),
                    ),
                )
                .await;
            }
            return Err(Refusal::Unusable {
                reason,
                tenant: record.tenant,
            });
        }
        Ok(Caller {
            key_id: record.id,
            tenant: record.tenant,
            scopes: record.scopes,
        })
    }

    /// Opens a dashboard session for the key `token` (a key's whole
    /// token): the session cookie's value, and who it speaks for.
    pub async fn sign_in(&self, token: &str) -> Result<(String, Caller), Refusal> {
        let caller = self.authenticate(Some(&format!("Bearer {token}"))).await?;
        let new = NewKey::generate();
        let record = SessionRecord {
            id: new.id.clone(),
            hash: self.keys.hash(new.secret()),
            key_id: caller.key_id.clone(),
            expires: now() + SESSION_SECS,
        };
        if let Err(e) = self.control.add_session(&record).await {
            tracing::error!(error = %e, "cannot store a session");
            return Err(Refusal::Unknown);
        }
        let log = caller.tenant.as_deref().unwrap_or(OPERATOR_LOG);
        self.record(
            log,
            AuditEvent::new("session.start", Some(&caller.key_id), "granted", json!({})),
        )
        .await;
        Ok((
            format!("{SESSION_PREFIX}{}_{}", new.id, new.secret()),
            caller,
        ))
    }

    /// The session a cookie's value names, and who it speaks for: `None`
    /// unless the session is live and its key still usable.
    pub async fn session(&self, cookie: &str) -> Option<(String, Caller)> {
        let rest = cookie.strip_prefix(SESSION_PREFIX)?;
        let token = format!("{}{rest}", key::PREFIX);
        let (id, secret) = key::parse(&token)?;
        let record = self.control.session(id).await.ok()??;
        if record.expires <= now() || !self.keys.matches(secret, &record.hash) {
            return None;
        }
        let key = self.control.key(&record.key_id).await.ok()??;
        if key.refusal(now()).is_some() {
            return None;
        }
        Some((
            record.id,
            Caller {
                key_id: key.id,
                tenant: key.tenant,
                scopes: key.scopes,
            },
        ))
    }

    /// Ends a session (and drops every expired one).
    pub async fn sign_out(&self, session: &str, caller: &Caller) {
        if let Err(e) = self.control.remove_session(session, now()).await {
            tracing::error!(error = %e, "cannot end a session");
        }
        let log = caller.tenant.as_deref().unwrap_or(OPERATOR_LOG);
        self.record(
            log,
            AuditEvent::new("session.end", Some(&caller.key_id), "ok", json!({})),
        )
        .await;
    }

    /// The token a session's forms carry: a keyed hash of the session id,
    /// which only this server can make.
    pub fn csrf_token(&self, session: &str) -> String {
        self.keys.hash(&format!("csrf:{session}"))
    }

    /// Whether `token` is `session`'s form token (in constant time).
    pub fn csrf_matches(&self, session: &str, token: &str) -> bool {
        self.keys.matches(&format!("csrf:{session}"), token)
    }

    /// Checks `tenant`'s audit log (or the operator's, [`OPERATOR_LOG`]).
    pub async fn verify_audit(&self, tenant: &str) -> Result<Verified, OperatorError> {
        Ok(self.audit.verify(tenant).await?)
    }
}

fn no_tenant(name: &str) -> OperatorError {
    OperatorError::NotFound(format!(
        "no tenant {name:?}; `warden tenants list` shows them"
    ))
}

/// The server's 256-bit secret in `path`, made (mode 0600) when missing.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<[u8; 32]> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let fresh: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, &fresh)?;
            file.sync_all()?;
            Ok(fresh)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(path)?;
            bytes.try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{} is not 32 bytes; it is the server's secret, which hashes API keys and chains the audit log (restore it from a backup)",
                        path.display()
                    ),
                )
            })
        }
        Err(e) => Err(e),
    }
}
