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
    /// The Rust SDK and the Python and JavaScript kits carry a copy of the contract inside
    /// their packages (so each packages and publishes on its own); it must
    /// be the contract.
    #[test]
    fn the_kits_carry_the_contract_unchanged() {
        let contract = include_str!("../../../wit/plugin.wit");
        let carried = [
            ("sdk/wit/", include_str!("../../../sdk/wit/plugin.wit")),
            (
                "sdk/python/warden_plugin/wit/deps/",
                include_str!("../../../sdk/python/warden_plugin/wit/deps/plugin.wit"),
            ),
            (
                "sdk/js/wit/deps/",
                include_str!("../../../sdk/js/wit/deps/plugin.wit"),
            ),
        ];
        for (dir, copy) in carried {
            assert!(
                contract == copy,
                "{dir}plugin.wit differs from wit/plugin.wit: copy the contract into the kit (cp wit/plugin.wit {dir})"
            );
        }
    }
}
