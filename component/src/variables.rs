//! Settings by name: Spin's application variables in the `spin-variables`
//! build, the environment everywhere.
//!
//! Spin hands a SpinApp's `variables` (and `spin up --variable`) to the
//! component as application variables, read through `fermyon:spin/variables`,
//! not as environment variables. `wasmtime serve` and the `vitrine` host
//! offer no such interface, and a component importing it does not
//! instantiate there, so only the Spin build (`--features spin-variables`)
//! asks Spin; every build reads the environment (`wasmtime serve --env`,
//! spin.toml's `environment`).

/// Spin's variable for the environment variable `env`: `VITRINE_MAX_INSTANCES`
/// is `max_instances` (Spin names are lower case).
pub fn spin_name(env: &str) -> String {
    env.strip_prefix("VITRINE_")
        .unwrap_or(env)
        .to_ascii_lowercase()
}

/// The setting whose environment name is `env`: Spin's variable when the
/// build asks Spin and the variable is set to something, else the environment.
pub fn lookup(env: &str) -> Option<String> {
    #[cfg(all(target_arch = "wasm32", feature = "spin-variables"))]
    match spin_sdk::variables::get(&spin_name(env)) {
        Ok(value) if !value.trim().is_empty() => return Some(value),
        // Unset (spin.toml's default is empty) or not declared: the environment decides.
        Ok(_) | Err(spin_sdk::variables::Error::Undefined(_)) => {}
        Err(e) => crate::warn!(
            "vitrine: cannot read Spin variable {}: {e}; using the environment's {env}",
            spin_name(env)
        ),
    }
    environment(env)
}

/// The environment variable `name`, as the runtime sets it now. In wasm this
/// asks `wasi:cli` each time: wasi-libc reads the environment once and keeps
/// it in memory, and in a pre-initialized component that once was `vitrine
/// preinit`'s run, so `std::env::var` would answer the snapshot's
/// environment, not `wasmtime serve --env`'s or spin.toml's.
pub fn environment(name: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return wasi::cli::environment::get_environment()
        .into_iter()
        .find_map(|(key, value)| (key == name).then_some(value));
    #[cfg(not(target_arch = "wasm32"))]
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_names_are_the_environment_names_in_lower_case_without_the_prefix() {
        assert_eq!(spin_name("VITRINE_MAX_INSTANCES"), "max_instances");
        assert_eq!(spin_name("VITRINE_MAX_IMAGE_PIXELS"), "max_image_pixels");
        assert_eq!(spin_name("OTHER"), "other");
    }
}
