//! Each tenant's audit log: JSON lines in `tenants/<name>/audit.jsonl` (in
//! a cluster, the messages of the tenant's JetStream stream
//! `WARDEN_AUDIT_<name>`, each append naming the message it follows),
//! append-only, each entry carrying the hash of the one before. The hash is
//! keyed with a key derived from the server's secret, and the last entry's
//! number and hash are kept in the control store, so an entry edited,
//! removed, reordered or cut off the end is found by [`verify`] and named.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::control::{AuditHead, ControlError, ControlStore};

/// The `prev` of a log's first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// 1 for the first entry, one more for each after.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened: `tool.call`, `key.refused`, `tenant.add`, …
    pub action: String,
    /// The key that acted (its id), when one did.
    pub key: Option<String>,
    /// `ok`, `denied`, `narrowed`, `tool-error`, `limit`, `trap`, …
    pub outcome: String,
    /// The particulars (never prompt text or tool arguments unless the
    /// operator asks for them).
    #[schema(value_type = Object)]
    pub detail: Value,
    /// The hash of the entry before ([`GENESIS`] for the first).
    pub prev: String,
    pub hash: String,
}

/// What the server records; the log adds number, time and hashes.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub action: &'static str,
    pub key: Option<String>,
    pub outcome: String,
    pub detail: Value,
}

impl AuditEvent {
    pub fn new(
        action: &'static str,
        key: Option<&str>,
        outcome: impl Into<String>,
        detail: Value,
    ) -> AuditEvent {
        AuditEvent {
            action,
            key: key.map(String::from),
            outcome: outcome.into(),
            detail,
        }
    }
}

/// Hashes entries with a key derived from the server's secret.
#[derive(Clone)]
pub struct Chain {
    key: [u8; 32],
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chain([redacted])")
    }
}

impl Chain {
    pub fn new(server_secret: &[u8; 32]) -> Chain {
        Chain {
            key: blake3::derive_key("warden 2026 audit log chain v1", server_secret),
        }
    }

    /// The hash of `entry`, over every field but `hash`, in a canonical
    /// form (object keys sorted), so that it does not depend on how a JSON
    /// library orders what it parsed.
    fn hash(&self, entry: &AuditEntry) -> String {
        let body = serde_json::json!([
            entry.seq,
            entry.at_ms,
            entry.action,
            entry.key,
            entry.outcome,
            entry.detail,
            entry.prev
        ]);
        let mut text = String::new();
        canonical(&body, &mut text);
        blake3::keyed_hash(&self.key, text.as_bytes())
            .to_hex()
            .to_string()
    }
}

/// `value` as JSON with every object's keys in sorted order.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Why an entry could not be recorded.
/// A cluster's audit log streams are `STREAM_<tenant>`, subject
/// `audit.<tenant>`.
pub const STREAM: &str = "WARDEN_AUDIT";
const SUBJECTS: &str = "audit";

/// Tries of a cluster append that keeps losing to other nodes' appends.
const APPEND_TRIES: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("audit log of {tenant} on the cluster: {error}")]
    Cluster { tenant: String, error: String },
}

/// The audit logs of every tenant, one writer per tenant at a time. Entries
/// recorded while a tenant's writer is busy wait for it together and go to
/// the log in one write, with one move of the head (a group commit): each
/// caller still returns only once its entry is in the log.
pub struct AuditLog {
    writer: Writer,
    tails: std::sync::Mutex<HashMap<String, Arc<Tail>>>,
}

/// What writes entries: owned, so that a batch is written to the end even
/// when the request that started it goes away.
#[derive(Clone)]
struct Writer {
    data_dir: PathBuf,
    chain: Chain,
    control: Arc<dyn ControlStore>,
    /// In a cluster, the logs are here rather than in files.
    logs: Option<warden_cluster::log::Logs>,
}

/// One tenant's entries waiting to be written, and its writer's turn.
#[derive(Default)]
struct Tail {
    waiting: std::sync::Mutex<Vec<Waiting>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

type Written = Result<AuditEntry, AuditError>;
type Waiting = (AuditEvent, u64, tokio::sync::oneshot::Sender<Written>);

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("data_dir", &self.writer.data_dir)
            .finish_non_exhaustive()
    }
}

/// Where tenant `name`'s log is.
pub fn path(data_dir: &Path, tenant: &str) -> PathBuf {
    crate::tenant::root(data_dir, tenant).join("audit.jsonl")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditError {
    /// The same failure, for another entry of the batch it failed.
    fn again(&self) -> AuditError {
        match self {
            AuditError::Io { path, error } => AuditError::Io {
                path: path.clone(),
                error: std::io::Error::new(error.kind(), error.to_string()),
            },
            AuditError::Control(e) => AuditError::Control(e.clone()),
            AuditError::Cluster { tenant, error } => AuditError::Cluster {
                tenant: tenant.clone(),
                error: error.clone(),
            },
        }
    }
}

impl AuditLog {
    pub fn new(data_dir: &Path, chain: Chain, control: Arc<dyn ControlStore>) -> AuditLog {
        AuditLog {
            writer: Writer {
                data_dir: data_dir.to_path_buf(),
                chain,
                control,
                logs: None,
            },
            tails: Default::default(),
        }
    }

    /// The logs of a cluster: on JetStream, shared by every node.
    pub fn on_cluster(
        data_dir: &Path,
        chain: Chain,
        control: Arc<dyn ControlStore>,
        nats: &warden_cluster::Nats,
        replicas: usize,
    ) -> AuditLog {
        let mut log = AuditLog::new(data_dir, chain, control);
        log.writer.logs = Some(warden_cluster::log::Logs::new(
            nats, STREAM, SUBJECTS, replicas,
        ));
        log
    }

    /// `tenant`'s entries as stored, each with its line (its place in the
    /// log); one that is not an entry is an `Err` naming it.
    pub async fn entries(&self, tenant: &str) -> Result<Lines, AuditError> {
        let Some(logs) = &self.writer.logs else {
            return read(&self.writer.data_dir, tenant).map_err(|error| AuditError::Io {
                path: path(&self.writer.data_dir, tenant),
                error,
            });
        };
        let messages = logs
            .read(tenant)
            .await
            .map_err(|e| cluster_error(tenant, e))?;
        Ok(messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i + 1, serde_json::from_slice(m).map_err(|e| e.to_string())))
            .collect())
    }

    /// Checks `tenant`'s log against its chain and the recorded head.
    pub async fn verify(&self, tenant: &str) -> Result<Verified, AuditError> {
        let lines = self.entries(tenant).await?;
        let head = self.writer.control.audit_head(tenant).await?;
        Ok(Verified {
            entries: lines.len(),
            problem: first_problem(&lines, head.as_ref(), &self.writer.chain),
        })
    }

    /// Appends `event` to `tenant`'s log and moves the head past it.
    pub async fn record(&self, tenant: &str, event: AuditEvent) -> Result<AuditEntry, AuditError> {
        let tail = {
            let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
            tails.entry(tenant.to_string()).or_default().clone()
        };
        let (done, mut written) = tokio::sync::oneshot::channel();
        tail.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((event, now_ms(), done));
        let turn = tail.turn.clone().lock_owned().await;
        // The writer before this one may have taken this entry with its own.
        if let Ok(result) = written.try_recv() {
            return result;
        }
        let batch = std::mem::take(&mut *tail.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        let writer = self.writer.clone();
        let tenant_name = tenant.to_string();
        // The batch is written, and its callers told, whatever becomes of
        // this one; the next writer waits for it.
        let _ = tokio::spawn(async move {
            let _turn = turn;
            let (events, senders): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|(event, at_ms, done)| ((event, at_ms), done))
                .unzip();
            match writer.append(&tenant_name, events).await {
                Ok(entries) => {
                    for (entry, done) in entries.into_iter().zip(senders) {
                        let _ = done.send(Ok(entry));
                    }
                }
                Err(error) => {
                    for done in senders {
                        let _ = done.send(Err(error.again()));
                    }
                }
            }
        })
        .await;
        written.await.unwrap_or_else(|_| {
            Err(AuditError::Io {
                path: path(&self.writer.data_dir, tenant),
                error: std::io::Error::other("the audit writer stopped before this entry"),
            })
        })
    }
}

fn cluster_error(tenant: &str, e: impl std::fmt::Display) -> AuditError {
    AuditError::Cluster {
        tenant: tenant.to_string(),
        error: e.to_string(),
    }
}

/// A log's entries, each with its line.
pub type Lines = Vec<(usize, Result<AuditEntry, String>)>;

impl Writer {
    /// Writes `events` to the end of `tenant`'s log, in order, in one
    /// write, and moves the head past the last.
    async fn append(
        &self,
        tenant: &str,
        events: Vec<(AuditEvent, u64)>,
    ) -> Result<Vec<AuditEntry>, AuditError> {
        if let Some(logs) = &self.logs {
            return self.append_on_cluster(logs, tenant, events).await;
        }
        let path = path(&self.data_dir, tenant);
        let io = |error| AuditError::Io {
            path: path.clone(),
            error,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // Another process (`warden keys create` beside `warden serve`)
        // appends to the same log: the file lock orders the two, from
        // reading the head to moving it.
        file.lock().map_err(io)?;
        let head = self.control.audit_head(tenant).await?;
        let (mut seq, mut prev) = match head {
            Some(h) => (h.seq + 1, h.hash),
            None => (1, GENESIS.to_string()),
        };
        let mut entries = Vec::with_capacity(events.len());
        let mut lines = Vec::new();
        for (event, at_ms) in events {
            let entry = self.entry(event, at_ms, seq, prev);
            serde_json::to_writer(&mut lines, &entry).map_err(|e| io(e.into()))?;
            lines.push(b'\n');
            seq += 1;
            prev = entry.hash.clone();
            entries.push(entry);
        }
        // One write of whole lines to a file opened for appending: a crash
        // leaves whole lines, at most the last ones missing.
        file.write_all(&lines).map_err(io)?;
        if let Some(last) = entries.last() {
            self.control
                .set_audit_head(
                    tenant,
                    &AuditHead {
                        seq: last.seq,
                        hash: last.hash.clone(),
                    },
                )
                .await?;
        }
        drop(file);
        Ok(entries)
    }
}

impl Writer {
    /// `event` as entry `seq` after the entry whose hash is `prev`, hashed.
    fn entry(&self, event: AuditEvent, at_ms: u64, seq: u64, prev: String) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at_ms,
            action: event.action.to_string(),
            key: event.key,
            outcome: event.outcome,
            detail: event.detail,
            prev,
            hash: String::new(),
        };
        entry.hash = self.chain.hash(&entry);
        entry
    }

    /// Appends `events` to `tenant`'s log on the cluster, each after the
    /// log's last entry as read: when another node appended in between,
    /// the entry is chained again onto the new end.
    async fn append_on_cluster(
        &self,
        logs: &warden_cluster::log::Logs,
        tenant: &str,
        events: Vec<(AuditEvent, u64)>,
    ) -> Result<Vec<AuditEntry>, AuditError> {
        let mut entries = Vec::with_capacity(events.len());
        for (event, at_ms) in events {
            let mut tries = 0;
            let entry = loop {
                tries += 1;
                if tries > APPEND_TRIES {
                    return Err(cluster_error(
                        tenant,
                        format!("other nodes kept appending ({APPEND_TRIES} tries)"),
                    ));
                }
                let last = logs
                    .last(tenant)
                    .await
                    .map_err(|e| cluster_error(tenant, e))?;
                let (after, seq, prev) = match &last {
                    Some((at, payload)) => {
                        let head: AuditEntry = serde_json::from_slice(payload).map_err(|e| {
                            cluster_error(tenant, format!("its last entry is not an entry: {e}"))
                        })?;
                        (*at, head.seq + 1, head.hash)
                    }
                    None => (0, 1, GENESIS.to_string()),
                };
                // Chained again onto a new end when another node wins.
                let entry = self.entry(event.clone(), at_ms, seq, prev);
                let payload = serde_json::to_vec(&entry).map_err(|e| cluster_error(tenant, e))?;
                let appended = logs
                    .append(tenant, after, &entry.hash, payload.into())
                    .await
                    .map_err(|e| cluster_error(tenant, e))?;
                match appended {
                    warden_cluster::log::Appended::At(_) => break entry,
                    warden_cluster::log::Appended::Behind => continue,
                }
            };
            entries.push(entry);
        }
        if let Some(last) = entries.last() {
            // The head only moves forward: another node may have set a
            // later one in between.
            let newer = self
                .control
                .audit_head(tenant)
                .await?
                .is_some_and(|head| head.seq > last.seq);
            if !newer {
                self.control
                    .set_audit_head(
                        tenant,
                        &AuditHead {
                            seq: last.seq,
                            hash: last.hash.clone(),
                        },
                    )
                    .await?;
            }
        }
        Ok(entries)
    }
}

/// The entries of `tenant`'s log, as stored, each with its line number;
/// a line that is not an entry is an `Err` naming it.
pub fn read(
    data_dir: &Path,
    tenant: &str,
) -> std::io::Result<Vec<(usize, Result<AuditEntry, String>)>> {
    let text = match std::fs::read_to_string(path(data_dir, tenant)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, serde_json::from_str(line).map_err(|e| e.to_string())))
        .collect())
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: usize,
    /// The first problem, naming the entry and line; `None` when the log
    /// is whole.
    pub problem: Option<String>,
}

fn first_problem(
    lines: &[(usize, Result<AuditEntry, String>)],
    head: Option<&AuditHead>,
    chain: &Chain,
) -> Option<String> {
    let mut prev = GENESIS.to_string();
    let mut expected = 1u64;
    for (i, (line, entry)) in lines.iter().enumerate() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Some(format!("line {line} is not an audit entry (edited?): {e}")),
        };
        if entry.seq != expected {
            let later = lines[i..]
                .iter()
                .find(|(_, e)| e.as_ref().is_ok_and(|e| e.seq == expected));
            return Some(match later {
                Some((at, _)) => format!(
                    "entry {expected} is out of order: line {line} holds entry {}, and entry {expected} is at line {at} (reordered)",
                    entry.seq
                ),
                None => format!(
                    "entry {expected} was removed: line {line} holds entry {} where entry {expected} should be",
                    entry.seq
                ),
            });
        }
        if entry.prev != prev {
            return Some(format!(
                "entry {} (line {line}) does not follow entry {}: the chain is broken there (edited or reordered)",
                entry.seq,
                expected - 1
            ));
        }
        if chain.hash(entry) != entry.hash {
            return Some(format!(
                "entry {} (line {line}) was edited: its content does not match its hash",
                entry.seq
            ));
        }
        prev = entry.hash.clone();
        expected += 1;
    }
    let last = expected - 1;
    match head {
        Some(head) if head.seq > last => Some(format!(
            "entries {}..={} were removed from the end (the control store recorded entry {} as the last)",
            last + 1,
            head.seq,
            head.seq
        )),
        Some(head) => {
            // Entries past the head are what a crash between writing a line
            // and recording the head leaves; they are chained all the same.
            let at_head = lines
                .iter()
                .find_map(|(_, e)| e.as_ref().ok().filter(|e| e.seq == head.seq));
            match at_head {
                Some(e) if e.hash == head.hash => None,
                _ => Some(format!(
                    "entry {} does not match the hash the control store recorded for it (the log was rewritten)",
                    head.seq
                )),
            }
        }
        None if last > 0 => Some(format!(
            "the log has {last} entries but the control store recorded none (the log was written by another server, or the store was replaced)"
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteControl;

    async fn log_of(n: usize) -> (tempfile::TempDir, Arc<SqliteControl>, Chain) {
        let dir = tempfile::tempdir().unwrap();
        let control = Arc::new(SqliteControl::open(&dir.path().join("c.sqlite")).unwrap());
        let chain = Chain::new(&[3; 32]);
        let log = AuditLog::new(dir.path(), chain.clone(), control.clone());
        for i in 0..n {
            log.record(
                "acme",
                AuditEvent::new("tool.call", Some("k"), "ok", serde_json::json!({ "i": i })),
            )
            .await
            .unwrap();
        }
        (dir, control, chain)
    }

    async fn problem(dir: &Path, control: &Arc<SqliteControl>, chain: &Chain) -> Option<String> {
        AuditLog::new(dir, chain.clone(), control.clone())
            .verify("acme")
            .await
            .unwrap()
            .problem
    }

    fn rewrite(dir: &Path, f: impl FnOnce(&mut Vec<String>)) {
        let file = path(dir, "acme");
        let mut lines: Vec<String> = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        f(&mut lines);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let chain = Chain::new(&[1; 32]);
        let entry = |detail: &str| AuditEntry {
            seq: 1,
            at_ms: 2,
            action: "a".into(),
            key: None,
            outcome: "ok".into(),
            detail: serde_json::from_str(detail).unwrap(),
            prev: GENESIS.into(),
            hash: String::new(),
        };
        let sorted = chain.hash(&entry(r#"{"a":1,"b":{"c":[1,{"d":2,"e":"\u00e9"}]}}"#));
        let shuffled = chain.hash(&entry(r#"{"b":{"c":[1,{"e":"é","d":2}]},"a":1}"#));
        assert_eq!(sorted, shuffled);
        assert_ne!(sorted, chain.hash(&entry(r#"{"a":2}"#)));
    }

    #[tokio::test]
    async fn an_untouched_log_verifies_and_each_tampering_is_named() {
        let (dir, control, chain) = log_of(5).await;
        let d = dir.path();
        let whole = AuditLog::new(d, chain.clone(), control.clone())
            .verify("acme")
            .await
            .unwrap();
        assert_eq!(
            whole,
            Verified {
                entries: 5,
                problem: None
            }
        );
        let original = std::fs::read_to_string(path(d, "acme")).unwrap();

        rewrite(d, |l| l[2] = l[2].replace("\"i\":2", "\"i\":7"));
        let p = problem(d, &control, &chain).await.unwrap();
        assert!(p.contains("entry 3 (line 3) was edited"), "{p}");

        std::fs::write(path(d, "acme"), &original).unwrap();
        rewrite(d, |l| {
            l.remove(1);
        });
        let p = problem(d, &control, &chain).await.unwrap();
        assert!(p.contains("entry 2 was removed"), "{p}");

        std::fs::write(path(d, "acme"), &original).unwrap();
        rewrite(d, |l| l.swap(1, 2));
        let p = problem(d, &control, &chain).await.unwrap();
        assert!(
            p.contains("entry 2 is out of order") && p.contains("line 3"),
            "{p}"
        );

        std::fs::write(path(d, "acme"), &original).unwrap();
        rewrite(d, |l| {
            l.pop();
        });
        let p = problem(d, &control, &chain).await.unwrap();
        assert!(p.contains("entries 5..=5 were removed from the end"), "{p}");

        // Rewriting the whole chain consistently needs the server's key.
        std::fs::write(path(d, "acme"), &original).unwrap();
        let forger = Chain::new(&[4; 32]);
        rewrite(d, |l| {
            let mut prev = GENESIS.to_string();
            for line in l.iter_mut() {
                let mut e: AuditEntry = serde_json::from_str(line).unwrap();
                e.outcome = "forged".into();
                e.prev = prev;
                e.hash = forger.hash(&e);
                prev = e.hash.clone();
                *line = serde_json::to_string(&e).unwrap();
            }
        });
        let p = problem(d, &control, &chain).await.unwrap();
        assert!(p.contains("entry 1 (line 1) was edited"), "{p}");

        std::fs::write(path(d, "acme"), &original).unwrap();
        rewrite(d, |l| l[0] = "{not json".into());
        let p = problem(d, &control, &chain).await.unwrap();
        assert!(p.contains("line 1 is not an audit entry"), "{p}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_recorded_at_once_all_land_in_order_even_when_callers_go_away() {
        let dir = tempfile::tempdir().unwrap();
        let control = Arc::new(SqliteControl::open(&dir.path().join("c.sqlite")).unwrap());
        let chain = Chain::new(&[3; 32]);
        let log = Arc::new(AuditLog::new(dir.path(), chain.clone(), control.clone()));
        let mut callers = Vec::new();
        for i in 0..64 {
            let log = log.clone();
            callers.push(tokio::spawn(async move {
                log.record(
                    "acme",
                    AuditEvent::new("tool.call", Some("k"), "ok", serde_json::json!({ "i": i })),
                )
                .await
                .unwrap()
                .seq
            }));
        }
        // Callers that give up at once leave the chain whole.
        for i in 64..80 {
            let log = log.clone();
            let gone = tokio::spawn(async move {
                log.record(
                    "acme",
                    AuditEvent::new("tool.call", Some("k"), "ok", serde_json::json!({ "i": i })),
                )
                .await
            });
            gone.abort();
        }
        let mut seqs = Vec::new();
        for caller in callers {
            seqs.push(caller.await.unwrap());
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 64, "every caller got its own entry");
        // One more, after the batches: the chain is whole and the head at
        // its end.
        let last = log
            .record(
                "acme",
                AuditEvent::new("x", None, "ok", serde_json::json!({})),
            )
            .await
            .unwrap();
        assert_eq!(problem(dir.path(), &control, &chain).await, None);
        let entries = read(dir.path(), "acme").unwrap();
        assert_eq!(entries.len() as u64, last.seq);
        assert!(entries.len() >= 65, "{}", entries.len());
    }
}

#[cfg(test)]
mod cluster_tests {
    use warden_tests::nats::NatsServer;

    use super::*;
    use crate::kv::KvControl;

    async fn node(url: &str, chain: &Chain) -> (AuditLog, tempfile::TempDir) {
        let address = url.to_string();
        let nats = tokio::task::spawn_blocking(move || warden_cluster::Nats::connect(&address))
            .await
            .unwrap()
            .unwrap();
        let control = Arc::new(KvControl::open(&nats, 1).await.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::on_cluster(dir.path(), chain.clone(), control, &nats, 1);
        (log, dir)
    }

    /// Two nodes recording at once write one chain, whole and in order;
    /// an entry removed from the stream is named.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clusters_log_chains_the_entries_of_every_node() {
        let server = NatsServer::start();
        let chain = Chain::new(&[7; 32]);
        let (a, _da) = node(&server.url, &chain).await;
        let (b, _db) = node(&server.url, &chain).await;
        let event = |n: usize| {
            AuditEvent::new("tool.call", Some("k1"), "ok", serde_json::json!({ "n": n }))
        };
        let (left, right) = tokio::join!(
            futures::future::join_all((0..10).map(|n| a.record("acme", event(n)))),
            futures::future::join_all((10..20).map(|n| b.record("acme", event(n)))),
        );
        for written in left.into_iter().chain(right) {
            written.unwrap();
        }
        b.record("bolt", event(99)).await.unwrap();

        let whole = a.verify("acme").await.unwrap();
        assert_eq!(whole.problem, None);
        assert_eq!(whole.entries, 20);
        let entries = b.entries("acme").await.unwrap();
        let mut seen: Vec<u64> = entries
            .iter()
            .map(|(_, e)| e.as_ref().unwrap().detail["n"].as_u64().unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<u64>>(), "every entry once");
        assert_eq!(b.verify("bolt").await.unwrap().entries, 1);

        // An entry taken out of the stream breaks the chain, named.
        let nats = warden_cluster::Nats::connect(&server.url).unwrap();
        let stream = nats
            .jetstream()
            .get_stream(format!("{STREAM}_acme"))
            .await
            .unwrap();
        stream.delete_message(5).await.unwrap();
        let problem = a.verify("acme").await.unwrap().problem.unwrap();
        assert!(problem.contains("was removed"), "{problem}");
    }
}
