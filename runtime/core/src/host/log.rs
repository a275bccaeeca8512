//! `warden:plugin/log`: a guest's log lines, into the host's trace.
//!
//! Each line is tagged with the tenant and plugin. A call may log at most
//! [`MAX_LINES`] lines of at most [`MAX_LINE_BYTES`] bytes; past that, lines are
//! dropped (and the drop is noted once), so a chatty or hostile guest cannot
//! flood the operator's logs.

use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::log::{self, Level};
use crate::state::{CallLabels, CallState};

pub const MAX_LINES: u32 = 10_000;
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// What the log interface keeps per call.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    lines: u32,
    dropped: u32,
}

impl LogBudget {
    pub(crate) fn dropped(&self) -> u32 {
        self.dropped
    }
}

/// The slice of a call's state the log interface may touch.
pub(crate) struct LogView<'a> {
    labels: &'a CallLabels,
    budget: &'a mut LogBudget,
}

struct HasLog;

impl HasData for HasLog {
    type Data<'a> = LogView<'a>;
}

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    log::add_to_linker::<CallState, HasLog>(linker, |state| LogView {
        labels: &state.labels,
        budget: &mut state.log,
    })
}

impl log::Host for LogView<'_> {
    async fn log(&mut self, level: Level, message: String) {
        if self.budget.lines >= MAX_LINES {
            if self.budget.dropped == 0 {
                tracing::warn!(
                    tenant = %self.labels.tenant,
                    plugin = %self.labels.plugin,
                    "guest logged more than {MAX_LINES} lines; dropping the rest of this call's log"
                );
            }
            self.budget.dropped += 1;
            return;
        }
        self.budget.lines += 1;
        let message = truncate(&message, MAX_LINE_BYTES);
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
    use super::truncate;

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
