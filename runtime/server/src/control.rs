//! The server's control state — tenants, key hashes, the head of each
//! tenant's audit log, idempotency keys and usage per day — behind one
//! trait, so that one node keeps it in
//! SQLite ([`crate::sqlite::SqliteControl`]) and a cluster in a shared
//! store, with the same callers.

use serde::{Deserialize, Serialize};
use warden_api::BoxFuture;

use crate::key::KeyRecord;
use crate::tenant::TenantRecord;

/// Why the control store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The write conflicts with what is there (a tenant that exists).
    #[error("{0}")]
    Conflict(String),
    /// The store itself failed (I/O, corruption).
    #[error("control store: {0}")]
    Store(String),
}

/// The last entry of a tenant's audit log, kept apart from the log so that
/// cutting entries off its end is found too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// The run an idempotency key started, and a hash of the request that did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRun {
    pub run: String,
    pub body_hash: String,
}

/// What a tenant used: calls, fuel, model tokens and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub calls: u64,
    pub fuel: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars.
    pub cost: f64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.calls += other.calls;
        self.fuel += other.fuel;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost += other.cost;
    }
}

/// One day's usage of one kind (`tool`, `mcp`, `exec`, `run`, `llm`) and,
/// for model calls, one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub kind: String,
    /// `provider/model` for `llm`, empty otherwise.
    pub model: String,
    pub counts: Counts,
}

/// A signed-in dashboard session: the key it was opened with, and a keyed
/// hash of its cookie's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub hash: String,
    pub key_id: String,
    /// Seconds since the Unix epoch.
    pub expires: i64,
}

pub type ControlResult<T> = Result<T, ControlError>;

/// Tenants, keys and audit heads. Every method is one atomic step.
pub trait ControlStore: Send + Sync {
    /// Adds a tenant; [`ControlError::Conflict`] when the name is taken.
    fn add_tenant<'a>(&'a self, tenant: &'a TenantRecord) -> BoxFuture<'a, ControlResult<()>>;

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ControlResult<Option<TenantRecord>>>;

    /// Every tenant, by name.
    fn tenants(&self) -> BoxFuture<'_, ControlResult<Vec<TenantRecord>>>;

    /// Removes a tenant and revokes its keys at `at`, in one step; `false`
    /// when there was no such tenant.
    fn remove_tenant<'a>(&'a self, name: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>>;

    fn add_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, ControlResult<()>>;

    fn key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<KeyRecord>>>;

    /// The keys of `tenant` (`None`: every key), oldest first.
    fn keys<'a>(&'a self, tenant: Option<&'a str>) -> BoxFuture<'a, ControlResult<Vec<KeyRecord>>>;

    /// Revokes a key at `at`; `false` when there is no such key. Revoking
    /// twice keeps the first time.
    fn revoke_key<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>>;

    fn audit_head<'a>(&'a self, tenant: &'a str)
    -> BoxFuture<'a, ControlResult<Option<AuditHead>>>;

    fn set_audit_head<'a>(
        &'a self,
        tenant: &'a str,
        head: &'a AuditHead,
    ) -> BoxFuture<'a, ControlResult<()>>;

    /// The run `key` started for `tenant`, if it did.
    fn idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ControlResult<Option<IdempotentRun>>>;

    /// Adds to `tenant`'s usage on `row.day` of `row.kind` and
    /// `row.model`.
    fn add_usage<'a>(
        &'a self,
        tenant: &'a str,
        row: &'a UsageRow,
    ) -> BoxFuture<'a, ControlResult<()>>;

    /// `tenant`'s usage from day `since` (`YYYY-MM-DD`) on, by day, kind
    /// and model.
    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, ControlResult<Vec<UsageRow>>>;

    /// Adds a dashboard session.
    fn add_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, ControlResult<()>>;

    fn session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<SessionRecord>>>;

    /// Ends session `id`, and every session expired by `now`.
    fn remove_session<'a>(&'a self, id: &'a str, now: i64) -> BoxFuture<'a, ControlResult<()>>;

    /// Records the run `key` started; the first record for a key stays.
    fn set_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a IdempotentRun,
    ) -> BoxFuture<'a, ControlResult<()>>;
}
