//! Upload validation: is it a component, what does it import, which world
//! does it implement. Each way to be wrong has its own error, with a message
//! that says how to fix it.

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::PluginError;
use crate::world::World;

/// The only import a plugin may have: the type-only `types` interface.
const ALLOWED_IMPORT: &str = "syncbase:plugin/types@0.2.0";

const WASI_HINT: &str = ". Rust: build for wasm32-unknown-unknown with `scripts/build-plugin` \
    (not wasm32-wasip1/p2); Python: pass `--stub-wasi` to componentize-py; JavaScript: pass \
    `--stub-wasi` to componentize-qjs (componentize-js/jco: `--disable all`); C: link none \
    of wasi-libc's stdio, clock, random or file functions (`scripts/build-plugin --lang \
    python|js|c` does all this)";

/// What validation learned about a component.
pub(crate) struct Validated {
    pub component: Component,
    pub world: World,
    pub exports: Vec<String>,
}

/// Checks the binary header: a component, not a core module or garbage.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), PluginError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PluginError::NotWasm(
            "it does not start with the \\0asm magic bytes".into(),
        ));
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(PluginError::CoreModule),
        [a, b, c, d] => Err(PluginError::NotWasm(format!(
            "unknown WebAssembly version/layer {a:02x} {b:02x} {c:02x} {d:02x}"
        ))),
        _ => Err(PluginError::NotWasm("truncated header".into())),
    }
}

/// Compiles (unless `compiled` already holds these bytes compiled, e.g. from
/// the compile cache: a Python component takes seconds to compile) and
/// inspects an uploaded component.
pub(crate) fn validate(
    engine: &Engine,
    bytes: &[u8],
    max_bytes: usize,
    compiled: Option<Component>,
) -> Result<Validated, PluginError> {
    if bytes.len() > max_bytes {
        return Err(PluginError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    check_header(bytes)?;
    let component = match compiled {
        Some(component) => component,
        None => Component::new(engine, bytes)
            .map_err(|e| PluginError::InvalidComponent(format!("{e:#}")))?,
    };
    let ty = component.component_type();

    let forbidden: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| name != ALLOWED_IMPORT)
        .collect();
    if let Some(first) = forbidden.first() {
        let wasi = forbidden.iter().any(|i| i.starts_with("wasi:"));
        return Err(PluginError::ForbiddenImport {
            import: first.clone(),
            all: forbidden.clone(),
            hint: if wasi { WASI_HINT } else { "" },
        });
    }

    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let worlds: Vec<World> = World::ALL
        .into_iter()
        .filter(|w| exports.iter().any(|e| e == w.entry_point()))
        .collect();
    let world = match worlds.as_slice() {
        [world] => *world,
        [] => {
            return Err(PluginError::WrongWorld(format!(
                "it exports [{}], but a plugin exports `configure` and one of `resolve` \
                 (resolver), `filter` (filter) or `decide` (snapshot-policy)",
                exports.join(", ")
            )));
        }
        several => {
            return Err(PluginError::WrongWorld(format!(
                "it exports the functions of several worlds ({}); a plugin implements one",
                several
                    .iter()
                    .map(|w| w.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    Ok(Validated {
        component,
        world,
        exports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_apart() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(PluginError::NotWasm(_))
        ));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(PluginError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_header(b"\0asm"),
            Err(PluginError::NotWasm(_))
        ));
    }
}
