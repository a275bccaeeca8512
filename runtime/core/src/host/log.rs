//! `warden:plugin/log`: a guest's log lines, into the host's trace.
//!
//! Each line is tagged with the tenant and plugin. A call may log at most
//! [`MAX_LINES`] lines of at most [`MAX_LINE_BYTES`] bytes, and no more bytes
//! in all than its output limit; past that, lines are dropped (and the drop
//! is noted once), so a chatty or hostile guest cannot flood the operator's
//! logs.

use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::log::{self, Level};
use crate::scope::CallLabels;

pub const MAX_LINES: u32 = 10_000;
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What the log interface keeps per call: who logs, and how much.
#[derive(Debug)]
pub(crate) struct LogContext {
    labels: CallLabels,
    /// Bytes the call may log in all: its output limit.
    max_bytes: u64,
    lines: u32,
    bytes: u64,
    dropped: u32,
}

impl LogContext {
    pub(crate) fn new(labels: CallLabels, max_bytes: u64) -> Self {
        LogContext {
            labels,
            max_bytes,
            lines: 0,
            bytes: 0,
            dropped: 0,
        }
    }

    /// Lines past the budget that were dropped.
    pub(crate) fn dropped(&self) -> u32 {
        self.dropped
    }
}

/// A store whose guests may log.
pub(crate) trait LogView: Send + 'static {
    fn log(&mut self) -> &mut LogContext;
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = &'a mut LogContext;
}

pub(crate) fn add_to_linker<T: LogView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    log::add_to_linker::<T, HasLog>(linker, T::log)
}

impl log::Host for &mut LogContext {
    async fn log(&mut self, level: Level, message: String) {
        let message = truncate(&message, MAX_LINE_BYTES);
        let bytes = self.bytes.saturating_add(message.len() as u64);
        if self.lines >= MAX_LINES || bytes > self.max_bytes {
            if self.dropped == 0 {
                tracing::warn!(
                    tenant = %self.labels.tenant,
                    plugin = %self.labels.plugin,
                    "guest logged more than {MAX_LINES} lines or {} bytes; dropping the rest of this call's log",
                    self.max_bytes
                );
            }
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.bytes = bytes;
        let tenant = self.labels.tenant.as_str();
        let plugin = &*self.labels.plugin;
        match level {
            Level::Trace => tracing::trace!(target: "warden::guest", tenant, plugin, "{message}"),
            Level::Debug => tracing::debug!(target: "warden::guest", tenant, plugin, "{message}"),
            Level::Info => tracing::info!(target: "warden::guest", tenant, plugin, "{message}"),
            Level::Warn => tracing::warn!(target: "warden::guest", tenant, plugin, "{message}"),
            Level::Error => tracing::error!(target: "warden::guest", tenant, plugin, "{message}"),
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::TenantId;
    use log::Host as _;

    #[tokio::test]
    async fn lines_past_the_budget_are_dropped_and_counted() {
        let labels = CallLabels {
            tenant: TenantId::default(),
            plugin: "p".into(),
        };
        let mut context = LogContext::new(labels.clone(), u64::MAX);
        let mut host = &mut context;
        for _ in 0..MAX_LINES + 5 {
            host.log(Level::Trace, "x".repeat(MAX_LINE_BYTES * 2)).await;
        }
        assert_eq!(context.dropped(), 5);

        // The output limit caps the bytes, however few the lines.
        let mut small = LogContext::new(labels, 1024);
        let mut host = &mut small;
        for _ in 0..3 {
            host.log(Level::Trace, "y".repeat(600)).await;
        }
        assert_eq!(small.dropped(), 2);
    }

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
