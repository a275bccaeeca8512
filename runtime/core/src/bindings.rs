//! Host-side bindings for the `warden:plugin` WIT package, generated once for
//! the whole crate. `tool-plugin-ext` is the widest tool world: a plugin of
//! the plain `tool-plugin` world imports a subset of it and loads the same.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "tool-plugin-ext",
    imports: { default: async },
    exports: { default: async },
});
