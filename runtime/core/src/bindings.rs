//! Host-side bindings for the `warden:plugin` WIT package, generated once for
//! the whole crate. `tool-plugin-ext` is the widest tool world: a plugin of
//! the plain `tool-plugin` world imports a subset of it and loads the same.
//! The role world reuses the interfaces the two share, so a type such as
//! `memory::hit` is one Rust type on both sides.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "tool-plugin-ext",
    imports: { default: async },
    exports: { default: async },
});

pub(crate) mod role {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "role-plugin",
        imports: { default: async },
        exports: { default: async },
        with: {
            "warden:plugin/types": crate::bindings::warden::plugin::types,
            "warden:plugin/log": crate::bindings::warden::plugin::log,
            "warden:plugin/llm": crate::bindings::warden::plugin::llm,
            "warden:plugin/memory": crate::bindings::warden::plugin::memory,
        },
    });
}

#[cfg(test)]
mod tests {
    /// The Rust SDK carries a copy of the contract inside its crate (so it
    /// packages and publishes on its own); it must be the contract.
    #[test]
    fn the_sdk_carries_the_contract_unchanged() {
        let contract = include_str!("../../../wit/plugin.wit");
        let carried = include_str!("../../../sdk/wit/plugin.wit");
        assert!(
            contract == carried,
            "sdk/wit/plugin.wit differs from wit/plugin.wit: copy the contract into the SDK (cp wit/plugin.wit sdk/wit/)"
        );
    }
}
