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
//! What makes the swap sound: when no module in the component has a start
//! function and the component has none ([`runs_code_when_instantiated`],
//! checked before a pool is made), instantiating runs no function of the
//! guest's, and so makes no host call: what it evaluates are the modules'
//! constant expressions (element, global and segment initialisers, which
//! cannot call anything). Some of that work is metered: about 6 300 units
//! of fuel for `python.wasm`, all in its modules with element segments,
//! not charged to the run. Nothing in the instance can
//! refer to the placeholder. warden's runtimes are pre-initialised
//! snapshots: they read their arguments, environment and directories when
//! `run` is called. The thread also checks that an instantiation left
//! nothing in the store's resource table.

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

/// Failed instantiations in a row after which the thread says so at warn.
const FAILURES_TOLD: u32 = 25;

/// Pooling-allocator slots one runtime's pool may hold at once with
/// `wanted` instances kept ready: those, as many stores waiting to be
/// dropped, and the one the thread has in hand (making or dropping it).
pub(crate) fn slots_held(wanted: u32) -> u32 {
    wanted.saturating_mul(2).saturating_add(1)
}

/// Whether instantiating the component `bytes` runs functions of its own
/// (which could call the host): a start function in any module it holds,
/// or a component start. A component that cannot be read counts as
/// running code.
pub(crate) fn runs_code_when_instantiated(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(
            payload,
            Err(_) | Ok(Payload::StartSection { .. } | Payload::ComponentStartSection { .. })
        )
    })
}

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
    /// The pool is dropped, or its thread is gone: nothing is kept.
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

    /// A ready instance that a call with `limits` may use: one made under
    /// limits no wider, whose memory fits in the call's. The thread starts
    /// on the next.
    pub(crate) fn take(&self, limits: &Limits) -> Option<Warm> {
        let mut state = self.shared.lock();
        let admitted = state
            .ready
            .last()
            .is_some_and(|warm| warm.store.data().limiter.admits(limits));
        if !admitted {
            return None;
        }
        let warm = state.ready.pop();
        self.shared.wake.notify_one();
        warm
    }

    /// Drops `store` on the pool's thread, or here when that thread is
    /// behind or gone (so that stores waiting to be dropped, which hold
    /// pool slots, stay few).
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
        let kept = self.shared.close();
        self.shared.wake.notify_one();
        drop(kept);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps nothing from now on; returns what was kept, to be dropped
    /// outside the lock.
    fn close(&self) -> (Vec<Warm>, Vec<Store<CallState>>) {
        let mut state = self.lock();
        state.closed = true;
        state.wanted = 0;
        (
            std::mem::take(&mut state.ready),
            std::mem::take(&mut state.retired),
        )
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

/// Closes the pool when its thread ends, however it ends, so that calls
/// stop handing it stores nobody would drop.
struct ClosesOnExit(Arc<Shared>);

impl Drop for ClosesOnExit {
    fn drop(&mut self) {
        drop(self.0.close());
    }
}

/// What the thread does next.
enum Chore {
    Drop(Store<CallState>),
    Make,
}

impl Filler {
    fn run(self) {
        let _closes = ClosesOnExit(self.shared.clone());
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::warn!(runtime = %self.name, error = %e, "no instances made ahead");
                return;
            }
        };
        let mut failures = 0u32;
        while let Some(chore) = self.next_chore(failures > 0) {
            match chore {
                Chore::Drop(store) => drop(store),
                Chore::Make => match runtime.block_on(self.make()) {
                    Ok(warm) => {
                        failures = 0;
                        let mut state = self.shared.lock();
                        if state.ready.len() < state.wanted {
                            state.ready.push(warm);
                        }
                    }
                    Err(Unusable::Again(e)) => {
                        failures += 1;
                        if failures == FAILURES_TOLD {
                            tracing::warn!(runtime = %self.name, failures, error = %e, "instances cannot be made ahead; runs instantiate their own meanwhile");
                        } else {
                            tracing::debug!(runtime = %self.name, error = %e, "could not make an instance ahead; trying again");
                        }
                    }
                    Err(Unusable::Never(why)) => {
                        tracing::warn!(runtime = %self.name, why, "instances are not made ahead for this runtime");
                        return;
                    }
                },
            }
        }
    }

    /// Waits for something to do: a retired store to drop (one at a time,
    /// so that the stores held stay within [`slots_held`]), else an
    /// instance to make. `None` once the pool is closed. After a failure
    /// it waits [`RETRY_AFTER`] before making another.
    fn next_chore(&self, failed: bool) -> Option<Chore> {
        let mut state = self.shared.lock();
        let mut backing_off = failed;
        loop {
            if state.closed {
                return None;
            }
            if let Some(store) = state.retired.pop() {
                return Some(Chore::Drop(store));
            }
            if state.ready.len() < state.wanted && !backing_off {
                return Some(Chore::Make);
            }
            state = if backing_off {
                backing_off = false;
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
    }

    /// One instance in a store with a placeholder state: no grants, the
    /// default limits, no input.
    async fn make(&self) -> Result<Warm, Unusable> {
        let options = CallOptions::default();
        let placeholder = RunInput::default();
        let prepared = Sandbox::prepare(
            &self.services,
            &self.name,
            self.imports,
            &options,
            &Capabilities::default(),
            Some(&placeholder),
        )
        .map_err(|e| Unusable::Again(e.to_string()))?;
        let mut sandbox =
            Sandbox::new(&self.services, prepared).map_err(|e| Unusable::Again(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::runs_code_when_instantiated;

    /// A component holding one core module, `module`.
    fn component_with(module: &[u8]) -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.push(1); // a core module section
        bytes.push(u8::try_from(module.len()).expect("a small module"));
        bytes.extend_from_slice(module);
        bytes
    }

    /// A core module with one function `() -> ()`, made its start
    /// function when `start`.
    fn module(start: bool) -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type: func () -> ()
        bytes.extend_from_slice(&[3, 2, 1, 0]); // one function of type 0
        if start {
            bytes.extend_from_slice(&[8, 1, 0]); // start: function 0
        }
        bytes.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]); // its body: nothing
        bytes
    }

    #[test]
    fn a_start_function_anywhere_in_the_component_is_found() {
        assert!(!runs_code_when_instantiated(&component_with(&module(
            false
        ))));
        assert!(runs_code_when_instantiated(&component_with(&module(true))));
        // What cannot be read is not trusted to run nothing.
        let mut cut = component_with(&module(false));
        cut.truncate(cut.len() - 3);
        assert!(runs_code_when_instantiated(&cut));
    }
}
