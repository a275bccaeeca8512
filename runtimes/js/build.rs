//! A 4 MiB C stack (in linear memory) for QuickJS on wasm instead of the
//! default 1 MiB, so that deep recursion always exhausts wasmtime's wasm
//! stack first: a clean stack-overflow trap rather than a C stack pointer
//! run out of bounds.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-bins=-zstack-size=4194304");
    }
}
