//! The run journal: one JSON line per event, appended and fsync'd before the
//! run moves on, in `<data>/runs/<id>/journal.jsonl`. A run's state is
//! nothing but these events folded in order ([`crate::state::RunState`]),
//! so a run killed at any point resumes from what its journal says.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use warden_core::{Outcome, TenantId, ToolCallKey};

use crate::workflow::{TaskSpec, Workflow};

/// Something that happened in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run: String,
        workflow: Workflow,
        goal: String,
        workspace: PathBuf,
        /// Where the workflow's relative plugin paths start.
        #[serde(default)]
        base_dir: PathBuf,
        /// Whose run it is; only that tenant may resume it. (Journals
        /// written before tenants were recorded belong to `default`.)
        #[serde(default)]
        tenant: TenantId,
    },
    /// A process took the run up again after a stop, or (`retry`) after
    /// it failed: then its dead and skipped tasks are pending again, each
    /// with a fresh allowance of retries.
    RunResumed {
        run: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
    TaskQueued {
        task: TaskSpec,
    },
    TaskStarted {
        task: String,
        role: String,
        attempt: u32,
        /// The cluster node that works the attempt (none on one node).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    },
    ToolCall {
        task: String,
        attempt: u32,
        key: ToolCallKey,
        /// The arguments (JSON), cut short like the result; empty in
        /// journals written before they were kept.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        arguments: String,
        ok: bool,
        /// The JSON result when `ok`, else the error; cut short (and then
        /// `truncated`) past what the journal keeps per call and per task.
        result: String,
        /// The result was too large to keep whole: a resumed attempt runs
        /// the call again instead of answering it from here.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        replayed: bool,
        fuel_used: u64,
        ms: u64,
    },
    LlmCall {
        task: String,
        provider: String,
        model: String,
        input_tokens: u64,
        output_tokens: u64,
        cost: f64,
    },
    TaskFinished {
        task: String,
        attempt: u32,
        outcome: Outcome,
        fuel_used: u64,
        ms: u64,
    },
    TaskFailed {
        task: String,
        attempt: u32,
        error: String,
        /// When another attempt follows, after this long.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
        fuel_used: u64,
        ms: u64,
    },
    /// Out of attempts (or not worth another): on the dead-letter list.
    TaskDead {
        task: String,
        attempts: u32,
        error: String,
    },
    TaskSkipped {
        task: String,
        because: String,
    },
    RunFinished {
        status: RunStatus,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    /// Every task finished, and the last verdict (a task output's
    /// `"accepted"`, a reviewer's) if any accepted the work.
    Succeeded,
    /// Every task finished, but the last verdict did not accept the work.
    NotAccepted,
    /// Some task is dead or skipped.
    Failed,
    /// Stopped on request before it ended: its unfinished tasks were
    /// skipped, and it is not taken up again.
    Cancelled,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// Where a run's records go, in order, each durable before `append`
/// returns: the journal file on one node; in a cluster, a journal that
/// refuses the appends of a node that lost its claim on the task. A
/// failed append is final for the writer: the run stops there, resumable.
pub trait JournalWriter: Send {
    fn append(&mut self, event: Event) -> std::io::Result<Record>;
}

impl JournalWriter for Journal {
    fn append(&mut self, event: Event) -> std::io::Result<Record> {
        Journal::append(self, event)
    }
}

/// The journal file of one run, open for appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
}

impl Journal {
    /// Creates the journal of a new run; fails if one exists.
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        sync_dir(path);
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            next_seq: 0,
        })
    }

    /// Opens an existing journal for appending and returns its records. A
    /// last line cut short by a crash is dropped from the file.
    pub fn open(path: &Path) -> std::io::Result<(Journal, Vec<Record>)> {
        let records = read(path)?;
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let kept = complete_length(&mut file)?;
        if kept < file.metadata()?.len() {
            tracing::warn!(path = %path.display(), "dropping a journal line cut short by a crash");
            file.set_len(kept)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::End(0))?;
        let next_seq = records.last().map_or(0, |r| r.seq + 1);
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                next_seq,
            },
            records,
        ))
    }

    /// Appends `event` and waits until it is on disk.
    pub fn append(&mut self, event: Event) -> std::io::Result<Record> {
        let record = Record {
            seq: self.next_seq,
            ts: now_ms(),
            event,
        };
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.next_seq += 1;
        Ok(record)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Every complete record of a journal file, in order.
pub fn read(path: &Path) -> std::io::Result<Vec<Record>> {
    let file = File::open(path)?;
    let mut records = Vec::new();
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(record) => records.push(record),
            Err(e) => {
                // Only a torn last line is expected; anything else is
                // damage worth stopping for rather than guessing past.
                let rest = &line;
                if rest.last() != Some(&b'}') {
                    tracing::warn!(path = %path.display(), line = n + 1, "ignoring a torn journal line");
                    break;
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path.display(), n + 1),
                ));
            }
        }
    }
    Ok(records)
}

/// The length of the file up to and including its last newline.
fn complete_length(file: &mut File) -> std::io::Result<u64> {
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    std::io::Read::read_to_end(file, &mut buf)?;
    Ok(buf
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at as u64 + 1))
}

/// Makes a new file's directory entry durable too.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::create(&path).unwrap();
        j.append(Event::RunResumed {
            run: "r".into(),
            retry: false,
        })
        .unwrap();
        j.append(Event::TaskSkipped {
            task: "a".into(),
            because: "b".into(),
        })
        .unwrap();
        drop(j);
        // A crash mid-write leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":2,"ts":1,"event":"task-sk"#).unwrap();
        drop(f);

        let (mut j, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].seq, 1);
        j.append(Event::RunResumed {
            run: "r".into(),
            retry: false,
        })
        .unwrap();
        let again = read(&path).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again[2].seq, 2);
        assert!(
            Journal::create(&path).is_err(),
            "create must not clobber a journal"
        );
    }
}
