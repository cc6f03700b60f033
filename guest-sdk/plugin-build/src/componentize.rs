//! Turns a core WebAssembly module built from a plugin crate into a component
//! of one `syncbase:plugin` world.
//!
//! The Rust guest SDK generates bindings for all three worlds, so a module may
//! carry the type information of worlds it does not implement. Rather than
//! trust whatever `component-type` sections the linker kept, this strips them
//! (and DWARF debug sections, which only bloat the component), works out the
//! world from the functions the module exports, and embeds that one world from
//! the WIT package compiled into this crate.

use wasm_encoder::{Module, RawSection};
use wasmparser::{Encoding, Parser, Payload};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{PackageId, Resolve, SourceMap};

use crate::{BuildError, WIT_FILES, World};

/// Parses the embedded `syncbase:plugin` package.
pub fn wit_package() -> Result<(Resolve, PackageId), BuildError> {
    let mut map = SourceMap::new();
    for (name, text) in WIT_FILES.iter().filter(|(n, _)| n.ends_with(".wit")) {
        map.push_str(name, *text);
    }
    let group = map
        .parse()
        .map_err(|(_, e)| BuildError::Wit(format!("{e}")))?;
    let mut resolve = Resolve::new();
    let package = resolve
        .push_group(group)
        .map_err(|e| BuildError::Wit(format!("{e}")))?;
    Ok((resolve, package))
}

/// Builds a component from a core module. With `world: None` the world is
/// detected from the module's exports.
pub fn componentize(core: &[u8], world: Option<World>) -> Result<(Vec<u8>, World), BuildError> {
    let (stripped, exports) = strip(core)?;
    let world = match world {
        Some(w) => w,
        None => detect_world(&exports)?,
    };
    let (resolve, package) = wit_package()?;
    let world_id = resolve
        .select_world(&[package], Some(world.wit_name()))
        .map_err(|e| BuildError::Wit(format!("{e:#}")))?;
    let mut module = stripped;
    wit_component::embed_component_metadata(&mut module, &resolve, world_id, StringEncoding::UTF8)
        .map_err(|e| BuildError::Componentize(format!("{e:#}")))?;
    let component = ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| BuildError::Componentize(format!("{e:#}")))?;
    Ok((component, world))
}

/// Copies the module without `component-type` and debug custom sections, and
/// returns the names it exports.
fn strip(core: &[u8]) -> Result<(Vec<u8>, Vec<String>), BuildError> {
    let mut module = Module::new();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(core) {
        let payload = payload.map_err(|e| BuildError::NotWasm(e.to_string()))?;
        match &payload {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(BuildError::AlreadyComponent),
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.map_err(|e| BuildError::NotWasm(e.to_string()))?;
                    exports.push(export.name.to_string());
                }
            }
            Payload::CustomSection(section) => {
                let name = section.name();
                if name.starts_with("component-type") || name.starts_with(".debug") {
                    continue;
                }
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection {
                id,
                data: &core[range],
            });
        }
    }
    Ok((module.finish(), exports))
}

/// Works out the world from the exported function names. A world-level export
/// `resolve` appears as `resolve` (or, with the newer name mangling, as a name
/// ending in `|resolve`).
fn detect_world(exports: &[String]) -> Result<World, BuildError> {
    let exports_fn = |f: &str| {
        exports
            .iter()
            .any(|e| e == f || e.ends_with(&format!("|{f}")))
    };
    let found: Vec<World> = World::ALL
        .into_iter()
        .filter(|w| exports_fn(w.entry_point()))
        .collect();
    match found.as_slice() {
        [world] => Ok(*world),
        [] => Err(BuildError::NoWorld {
            exports: exports.join(", "),
        }),
        _ => Err(BuildError::SeveralWorlds(
            found
                .iter()
                .map(|w| w.wit_name())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_wit_has_the_three_worlds() {
        let (resolve, package) = wit_package().expect("the WIT package parses");
        for world in World::ALL {
            assert!(
                resolve
                    .select_world(&[package], Some(world.wit_name()))
                    .is_ok(),
                "missing world {}",
                world.wit_name()
            );
        }
    }

    #[test]
    fn a_module_exporting_no_plugin_function_is_refused_with_its_exports() {
        let core = wat::parse_str(r#"(module (func (export "hello")))"#).expect("valid wat");
        match componentize(&core, None) {
            Err(BuildError::NoWorld { exports }) => assert_eq!(exports, "hello"),
            other => panic!("expected NoWorld, got {other:?}"),
        }
    }

    #[test]
    fn a_component_is_not_componentized_twice() {
        let component = wat::parse_str("(component)").expect("valid wat");
        assert!(matches!(
            componentize(&component, None),
            Err(BuildError::AlreadyComponent)
        ));
    }
}
