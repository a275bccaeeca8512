//! Benchmarks of the host path through real guests, in one binary: each
//! would link wasmtime, LanceDB and candle on its own.
//!
//! ```text
//! cargo bench -p warden-tests --bench guests                   # all of them
//! WARDEN_BENCH=call cargo bench -p warden-tests --bench guests  # one
//! ```
//!
//! `call`: cold tool calls through warden against a bare wasmtime
//! embedding; `llm`: the local model's tokens per second and what
//! the host interface adds to a model call; `memory`: the store at 100 000
//! entries, directly, through a guest and against LanceDB itself.

mod call;
mod llm;
mod memory;

fn main() {
    let only = std::env::var("WARDEN_BENCH").ok();
    let benches: [(&str, fn()); 3] = [
        ("call", call::main),
        ("llm", llm::main),
        ("memory", memory::main),
    ];
    let mut ran = false;
    for (name, bench) in benches {
        if only.as_deref().is_none_or(|o| o == name) {
            eprintln!("== {name}");
            bench();
            ran = true;
        }
    }
    if !ran {
        eprintln!(
            "WARDEN_BENCH={} is not a benchmark here; use call, llm or memory",
            only.unwrap_or_default()
        );
        std::process::exit(2);
    }
}
