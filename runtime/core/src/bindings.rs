//! Host-side bindings for the `warden:plugin` WIT package, generated once for
//! the whole crate.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "tool-plugin",
    imports: { default: async },
    exports: { default: async },
});
