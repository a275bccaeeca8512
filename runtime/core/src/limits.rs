//! Per-call limits and the resource limiter that enforces the memory, table
//! and instance parts of them.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One MiB, for the `*_mib` fields.
pub const MIB: u64 = 1024 * 1024;

/// The largest linear memory any call may be given. The engine's pooling
/// allocator reserves address space for memories of this size, so a `--memory`
/// above it is refused up front rather than failing at instantiation.
pub const MAX_MEMORY_BYTES: u64 = 4096 * MIB;

/// What one call may consume. Every call gets all of these; there is no
/// "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wasm fuel: roughly one unit per instruction executed.
    pub fuel: u64,
    /// Wall-clock time from instantiation to the result, host calls included.
    pub timeout: Duration,
    /// Bytes of linear memory, summed over every memory of the call.
    pub memory_bytes: u64,
    /// Elements of any one table.
    pub table_elements: u64,
    /// Core wasm instances the component may create.
    pub instances: u32,
    /// Bytes the guest may hand to the host in one go: the tool's result, one
    /// log line, one HTTP body write. Enforced by wasmtime's hostcall fuel
    /// before anything is copied, so the host never allocates past it.
    pub output_bytes: u64,
    /// Bytes of stdout and of stderr kept, each; the rest is dropped and the
    /// capture marked truncated.
    pub stdio_bytes: u64,
    /// Bytes of an outbound HTTP request body, and of a response body.
    pub http_body_bytes: u64,
    /// Files (and directories) the guest may hold open at once, its granted
    /// directories included: each is a host file descriptor.
    pub open_files: u32,
    /// Bytes the guest may write to disk in all, wherever it may write (a
    /// scratch dir, a read-write grant).
    pub disk_bytes: u64,
    /// Files and directories the guest may create in all.
    pub new_files: u32,
}

impl Default for Limits {
    /// Stops a runaway loop within about five seconds and 256 MiB.
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000_000,
            timeout: Duration::from_secs(5),
            memory_bytes: 256 * MIB,
            table_elements: 100_000,
            instances: 64,
            output_bytes: 16 * MIB,
            stdio_bytes: MIB,
            http_body_bytes: 16 * MIB,
            open_files: 256,
            disk_bytes: 256 * MIB,
            new_files: 10_000,
        }
    }
}

/// Limits as a manifest, a policy file or CLI flags state them: every field
/// optional, in the units people write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_kib: Option<u64>,
}

impl LimitSettings {
    /// Fields set in `self` win over those in `fallback`.
    pub fn or(self, fallback: LimitSettings) -> LimitSettings {
        LimitSettings {
            fuel: self.fuel.or(fallback.fuel),
            timeout_ms: self.timeout_ms.or(fallback.timeout_ms),
            memory_mib: self.memory_mib.or(fallback.memory_mib),
            output_kib: self.output_kib.or(fallback.output_kib),
        }
    }

    /// Each field of `self` lowered to at most the same field of `ceiling`.
    pub fn at_most(self, ceiling: &Limits) -> LimitSettings {
        let ceiling = LimitSettings::from(ceiling);
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, _) => a,
        };
        LimitSettings {
            fuel: min(self.fuel, ceiling.fuel),
            timeout_ms: min(self.timeout_ms, ceiling.timeout_ms),
            memory_mib: min(self.memory_mib, ceiling.memory_mib),
            output_kib: min(self.output_kib, ceiling.output_kib),
        }
    }

    /// Whether every field set here is usable (the one check for limits,
    /// wherever they are written).
    pub fn check(&self) -> Result<(), LimitError> {
        self.apply_to(Limits::default()).map(|_| ())
    }

    /// `base` with the fields set here replacing its own.
    pub fn apply_to(self, base: Limits) -> Result<Limits, LimitError> {
        let mut limits = base;
        if let Some(fuel) = self.fuel {
            if fuel == 0 {
                return Err(LimitError::Zero("fuel"));
            }
            limits.fuel = fuel;
        }
        if let Some(ms) = self.timeout_ms {
            if ms == 0 {
                return Err(LimitError::Zero("timeout-ms"));
            }
            limits.timeout = Duration::from_millis(ms);
        }
        if let Some(mib) = self.memory_mib {
            if mib == 0 {
                return Err(LimitError::Zero("memory-mib"));
            }
            let bytes = mib.saturating_mul(MIB);
            if bytes > MAX_MEMORY_BYTES {
                return Err(LimitError::MemoryTooLarge(mib));
            }
            limits.memory_bytes = bytes;
        }
        if let Some(kib) = self.output_kib {
            if kib == 0 {
                return Err(LimitError::Zero("output-kib"));
            }
            limits.output_bytes = kib.saturating_mul(1024);
        }
        Ok(limits)
    }
}

impl From<&Limits> for LimitSettings {
    fn from(limits: &Limits) -> Self {
        LimitSettings {
            fuel: Some(limits.fuel),
            timeout_ms: Some(u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX)),
            memory_mib: Some(limits.memory_bytes / MIB),
            output_kib: Some(limits.output_bytes / 1024),
        }
    }
}

/// A limit setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("`{0}` must be greater than 0")]
    Zero(&'static str),
    #[error(
        "`memory-mib = {0}` is above the 4096 MiB a 32-bit wasm memory can address; use at most 4096"
    )]
    MemoryTooLarge(u64),
}

/// Which limit stopped a call. The names are what `warden` prints and what
/// `--json` reports, so they are part of the CLI contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    Fuel,
    Deadline,
    Memory,
    Output,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Fuel => "fuel",
            LimitKind::Deadline => "deadline",
            LimitKind::Memory => "memory",
            LimitKind::Output => "output",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Enforces the memory, table and instance limits of one call and remembers
/// a refused memory growth: a Rust guest whose allocation fails aborts with
/// `unreachable`, and without this record the host could only report "trap".
#[derive(Debug)]
pub(crate) struct CallLimiter {
    memory_bytes: u64,
    table_elements: u64,
    instances: u32,
    /// Sum of the current sizes of all memories, kept as they grow.
    memory_in_use: u64,
    /// The total a refused growth asked for, if any growth was refused.
    pub(crate) memory_refused: Option<u64>,
    pub(crate) table_refused: Option<u64>,
}

impl CallLimiter {
    pub(crate) fn new(limits: &Limits) -> Self {
        CallLimiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            instances: limits.instances,
            memory_in_use: 0,
            memory_refused: None,
            table_refused: None,
        }
    }
}

impl CallLimiter {
    /// Whether a store instantiated under this limiter (and nothing more)
    /// could have been instantiated under `limits`: the memory it took fits,
    /// and its instance and table limits were no wider.
    pub(crate) fn admits(&self, limits: &Limits) -> bool {
        self.memory_refused.is_none()
            && self.table_refused.is_none()
            && self.memory_in_use <= limits.memory_bytes
            && self.instances <= limits.instances
            && self.table_elements <= limits.table_elements
    }

    /// Counts the memory `earlier` let the store take as taken here too.
    pub(crate) fn carry_over(&mut self, earlier: &CallLimiter) {
        self.memory_in_use = earlier.memory_in_use;
    }
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow_by = desired.saturating_sub(current) as u64;
        let total = self.memory_in_use.saturating_add(grow_by);
        if total > self.memory_bytes {
            self.memory_refused = Some(total);
            tracing::debug!(
                requested = total,
                limit = self.memory_bytes,
                "memory growth refused"
            );
            return Ok(false);
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Growth we allowed failed anyway (the memory's own maximum, or the
        // OS): not a limit of ours, so just note it.
        tracing::debug!(%error, "memory growth failed");
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.table_refused = Some(desired as u64);
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances as usize
    }

    fn tables(&self) -> usize {
        self.instances as usize
    }

    fn memories(&self) -> usize {
        self.instances as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn limiter_counts_growth_across_calls_and_records_refusal() {
        let limits = Limits {
            memory_bytes: 10 * MIB,
            ..Limits::default()
        };
        let mut limiter = CallLimiter::new(&limits);
        let page = 64 * 1024;
        assert!(limiter.memory_growing(0, 64 * page, None).unwrap());
        assert!(limiter.memory_growing(64 * page, 160 * page, None).unwrap());
        assert_eq!(limiter.memory_refused, None);
        // 160 pages = 10 MiB in use; one more page is over.
        assert!(
            !limiter
                .memory_growing(160 * page, 161 * page, None)
                .unwrap()
        );
        assert_eq!(limiter.memory_refused, Some(10 * MIB + page as u64));
    }

    #[test]
    fn a_store_made_ahead_is_admitted_only_under_limits_as_wide() {
        let made = Limits::default();
        let mut limiter = CallLimiter::new(&made);
        assert!(limiter.memory_growing(0, 30 * MIB as usize, None).unwrap());
        assert!(limiter.admits(&made));
        let narrower = |f: fn(&mut Limits)| {
            let mut limits = made;
            f(&mut limits);
            limits
        };
        assert!(!limiter.admits(&narrower(|l| l.memory_bytes = 16 * MIB)));
        assert!(!limiter.admits(&narrower(|l| l.instances -= 1)));
        assert!(!limiter.admits(&narrower(|l| l.table_elements -= 1)));

        // The call's limiter goes on from what the store already took.
        let mut call = CallLimiter::new(&narrower(|l| l.memory_bytes = 40 * MIB));
        call.carry_over(&limiter);
        let grown = 30 * MIB as usize;
        assert!(
            !call
                .memory_growing(grown, grown + 11 * MIB as usize, None)
                .unwrap()
        );
        assert!(
            call.memory_growing(grown, grown + 10 * MIB as usize, None)
                .unwrap()
        );
    }

    #[test]
    fn settings_apply_and_reject_nonsense() {
        let s = LimitSettings {
            fuel: Some(5),
            timeout_ms: Some(100),
            memory_mib: Some(32),
            output_kib: None,
        };
        let l = s.apply_to(Limits::default()).unwrap();
        assert_eq!(l.fuel, 5);
        assert_eq!(l.timeout, Duration::from_millis(100));
        assert_eq!(l.memory_bytes, 32 * MIB);
        assert_eq!(l.output_bytes, Limits::default().output_bytes);

        let zero = LimitSettings {
            fuel: Some(0),
            ..Default::default()
        };
        assert_eq!(
            zero.apply_to(Limits::default()),
            Err(LimitError::Zero("fuel"))
        );
        let huge = LimitSettings {
            memory_mib: Some(5000),
            ..Default::default()
        };
        assert_eq!(
            huge.apply_to(Limits::default()),
            Err(LimitError::MemoryTooLarge(5000))
        );
    }

    #[test]
    fn manifest_defaults_never_exceed_operator_ceiling() {
        let asked = LimitSettings {
            fuel: Some(u64::MAX),
            timeout_ms: Some(100),
            memory_mib: None,
            output_kib: None,
        };
        let ceiling = Limits::default();
        let capped = asked.at_most(&ceiling);
        assert_eq!(capped.fuel, Some(ceiling.fuel));
        assert_eq!(capped.timeout_ms, Some(100));
        assert_eq!(capped.memory_mib, None);
    }
}
