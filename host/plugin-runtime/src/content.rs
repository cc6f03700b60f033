//! What a component's bytes mean, as opposed to how they happen to be laid out.
//!
//! Two figures come from walking every section, nested modules and components included:
//!
//! - the **code size**: the bytes that are not custom sections. Custom sections (names,
//!   producers, debug info, anything a build tool adds) never run, so they must not decide
//!   anything about a plugin: in particular whether it is a heavy guest with larger limits
//!   (padding a small plugin with a large custom section must not earn it those limits);
//! - the **canonical digest**: what makes two components "the same plugin" for an upload. The
//!   Rust and C builds are byte-for-byte reproducible, but componentize-py and
//!   componentize-qjs snapshot an initialised interpreter whose memory differs from build to
//!   build (randomised hashing, allocator state, map orders: upstream issues
//!   componentize-py#247 and ComponentizeJS#321). So `syncbase plugin build` records a digest
//!   of everything the build read (sources, SDK, WIT, toolchain version) in a custom section,
//!   [`SOURCE_SECTION`]; when it is present it is the canonical digest. Otherwise the digest
//!   covers every non-custom section, so stripping or adding custom sections changes nothing.
//!
//! The digest identifies what was built, not what runs: nodes always run, and bind, the exact
//! bytes named by their sha256.

use sha2::{Digest, Sha256};
use wasmparser::{Parser, Payload};

/// The custom section in which `syncbase plugin build` records its sources' digest.
pub const SOURCE_SECTION: &str = "syncbase:source";

/// The meaning-bearing figures of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Bytes outside custom sections, at every nesting level.
    pub code_size: u64,
    /// Lowercase hex digest identifying the plugin's content (see the module docs).
    pub canonical: String,
}

/// Walks a component (or module). Fails only on bytes that do not parse as WebAssembly.
pub fn inspect(bytes: &[u8]) -> Result<Content, String> {
    let mut custom = 0u64;
    let mut sections = Sha256::new();
    let mut source = None;
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match &payload {
            Payload::Version { num, encoding, .. } => {
                depth += 1;
                sections.update(format!("V{num}{encoding:?}").as_bytes());
                continue;
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                sections.update(b"E");
                continue;
            }
            Payload::CustomSection(reader) => {
                // The section's id byte and size prefix count as custom too.
                let header = 1 + leb_len(reader.range().len() as u64);
                custom += (reader.range().len() + header) as u64;
                if depth == 1 && reader.name() == SOURCE_SECTION {
                    source = Some(sha256_hex(reader.data()));
                }
                continue;
            }
            // Their contents are walked as nested payloads.
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                sections.update(b"N");
                continue;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.update([id]);
            sections.update((range.len() as u64).to_le_bytes());
            sections.update(&bytes[range]);
        }
    }
    let canonical = match source {
        Some(digest) => digest,
        None => hex(&sections.finalize()),
    };
    Ok(Content {
        code_size: (bytes.len() as u64).saturating_sub(custom),
        canonical,
    })
}

fn leb_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(custom: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(component
                 (core module (func (export "f")) {custom})
                 {custom})"#
        ))
        .expect("valid wat")
    }

    #[test]
    fn custom_sections_count_neither_in_size_nor_in_the_digest() {
        let plain = component("");
        let padded = component(&format!(r#"(@custom "pad" "{}")"#, "x".repeat(100_000)));
        assert!(padded.len() > plain.len() + 200_000);
        let (a, b) = (
            inspect(&plain).expect("parses"),
            inspect(&padded).expect("parses"),
        );
        assert_eq!(a.canonical, b.canonical);
        // The nested module's size prefix grows by a byte or two with the padding.
        assert!(b.code_size.abs_diff(a.code_size) <= 4, "{a:?} {b:?}");
        assert!(a.code_size <= plain.len() as u64);
    }

    #[test]
    fn a_different_body_is_a_different_digest() {
        let a = wat::parse_str(r#"(component (core module (func (export "f"))))"#).expect("wat");
        let b = wat::parse_str(r#"(component (core module (func (export "g"))))"#).expect("wat");
        assert_ne!(
            inspect(&a).expect("parses").canonical,
            inspect(&b).expect("parses").canonical
        );
    }

    #[test]
    fn a_recorded_source_digest_is_the_canonical_one() {
        let one = component(r#"(@custom "syncbase:source" "abc")"#);
        // Different code, same recorded sources: what a nondeterministic toolchain gives.
        let two = wat::parse_str(
            r#"(component (core module (func (export "f") (nop))) (@custom "syncbase:source" "abc"))"#,
        )
        .expect("wat");
        assert_eq!(
            inspect(&one).expect("parses").canonical,
            inspect(&two).expect("parses").canonical
        );
        assert_eq!(inspect(&one).expect("parses").canonical, sha256_hex(b"abc"));
    }

    #[test]
    fn garbage_does_not_parse() {
        assert!(inspect(b"\0asm\x0d\0\x01\0\xff\xff").is_err());
    }
}
