//! Instances of a language runtime made ahead of the calls that will use
//! them, off the request path.
//!
//! Instantiating `python.wasm` wires a hundred core instances and takes
//! most of a millisecond; its call takes as long again. A [`WarmPool`]
//! keeps a few instances ready, each in its own store with a placeholder
//! state, made by a thread of its own while calls run. A call takes one,
//! puts its own state (WASI context, limits, grants, output) in place of
//! the placeholder and runs it ([`Sandbox::adopt`]); the thread makes the
//! next. Every call still gets an instance no call ran in before. The
//! same thread drops the stores of finished calls, so that resetting their
//! memories is off the request path too.
//!
//! What makes the swap sound: instantiating the runtimes runs no guest
//! code that talks to the host (they are pre-initialised snapshots, which
//! read their arguments, environment and directories when `run` is
//! called), so nothing in the instance refers to the placeholder. The
//! thread checks the part it can see: an instantiation that left anything
//! in the store's resource table turns the pool off.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use wasmtime::Store;
use wasmtime_wasi::p2::bindings::{Command, CommandPre};

use crate::call::{CallOptions, Imports, RunInput, Sandbox, Services};
use crate::limits::Limits;
use crate::policy::Capabilities;
use crate::state::CallState;

/// How long the thread waits before trying again after an instantiation
/// failed (every pool slot taken by running calls, say).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Ready instances of one runtime, and the thread that makes them.
pub(crate) struct WarmPool {
    shared: Arc<Shared>,
}

/// An instance made ahead of its call, in its own store.
pub(crate) struct Warm {
    pub(crate) store: Store<CallState>,
    pub(crate) command: Command,
}

struct Shared {
    state: Mutex<PoolState>,
    /// Wakes the thread: an instance was taken, a store retired, or the
    /// pool dropped.
    wake: Condvar,
}

struct PoolState {
    ready: Vec<Warm>,
    /// How many instances to keep ready; 0 once the pool is turned off.
    wanted: usize,
    /// Stores of finished calls, for the thread to drop.
    retired: Vec<Store<CallState>>,
    closed: bool,
}

impl WarmPool {
    /// Starts a thread that keeps `wanted` instances of `pre` ready.
    pub(crate) fn start(
        services: Arc<Services>,
        name: Arc<str>,
        imports: Imports,
        pre: CommandPre<CallState>,
        wanted: usize,
    ) -> std::io::Result<WarmPool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(PoolState {
                ready: Vec::with_capacity(wanted),
                wanted,
                retired: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let filler = Filler {
            shared: shared.clone(),
            services,
            name,
            imports,
            pre,
        };
        std::thread::Builder::new()
            .name(format!("warden-warm-{}", filler.name))
            .spawn(move || filler.run())?;
        Ok(WarmPool { shared })
    }

    /// A ready instance, if there is one; the thread starts on the next.
    pub(crate) fn take(&self) -> Option<Warm> {
        let mut state = self.shared.lock();
        let warm = state.ready.pop();
        if warm.is_some() {
            self.shared.wake.notify_one();
        }
        warm
    }

    /// Puts back an instance taken but not used.
    pub(crate) fn give_back(&self, warm: Warm) {
        let mut state = self.shared.lock();
        if state.ready.len() < state.wanted {
            state.ready.push(warm);
        }
    }

    /// Drops `store` on the pool's thread, or here when that thread is
    /// behind (so that stores waiting to be dropped, which hold pool
    /// slots, stay few).
    pub(crate) fn retire(&self, store: Store<CallState>) {
        let mut state = self.shared.lock();
        if state.closed || state.retired.len() >= state.wanted.max(1) {
            drop(state);
            drop(store);
            return;
        }
        state.retired.push(store);
        self.shared.wake.notify_one();
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.ready.clear();
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The pool's thread: what it needs to make instances.
struct Filler {
    shared: Arc<Shared>,
    services: Arc<Services>,
    name: Arc<str>,
    imports: Imports,
    pre: CommandPre<CallState>,
}

impl Filler {
    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::warn!(runtime = %self.name, error = %e, "no instances kept ready");
                return;
            }
        };
        let mut failed = false;
        loop {
            let mut state = self.shared.lock();
            loop {
                if state.closed {
                    return;
                }
                if !state.retired.is_empty() || (state.ready.len() < state.wanted && !failed) {
                    break;
                }
                state = if failed {
                    failed = false;
                    self.shared
                        .wake
                        .wait_timeout(state, RETRY_AFTER)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                } else {
                    self.shared
                        .wake
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner())
                };
            }
            let retired = std::mem::take(&mut state.retired);
            let short = state.ready.len() < state.wanted;
            drop(state);
            drop(retired);
            if !short {
                continue;
            }
            match runtime.block_on(self.make()) {
                Ok(warm) => {
                    let mut state = self.shared.lock();
                    if state.ready.len() < state.wanted {
                        state.ready.push(warm);
                    }
                }
                Err(Unusable::Again(e)) => {
                    tracing::debug!(runtime = %self.name, error = %e, "could not make an instance ahead; trying again");
                    failed = true;
                }
                Err(Unusable::Never(why)) => {
                    tracing::warn!(runtime = %self.name, why, "instances are not made ahead for this runtime");
                    let mut state = self.shared.lock();
                    state.wanted = 0;
                    state.ready.clear();
                }
            }
        }
    }

    /// One instance in a store with a placeholder state: no grants, the
    /// default limits, no input.
    async fn make(&self) -> Result<Warm, Unusable> {
        let options = CallOptions {
            limits: Limits::default(),
            ..CallOptions::default()
        };
        let placeholder = RunInput::default();
        let mut sandbox = Sandbox::new(
            &self.services,
            &self.name,
            self.imports,
            &options,
            &Capabilities::default(),
            Some(&placeholder),
        )
        .map_err(|e| Unusable::Again(e.to_string()))?;
        let command = self
            .pre
            .instantiate_async(sandbox.store())
            .await
            .map_err(|e| Unusable::Again(format!("{e:#}")))?;
        let store = sandbox.into_store();
        if !store.data().table.is_empty() {
            return Err(Unusable::Never(
                "its instantiation made host resources, which a call's own state could not replace",
            ));
        }
        Ok(Warm { store, command })
    }
}

enum Unusable {
    /// This attempt failed; a later one may not.
    Again(String),
    /// The runtime cannot be made ahead at all.
    Never(&'static str),
}
