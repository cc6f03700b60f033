//! A file's type from its first bytes, as PocketBase detects it (Go's `mimetype`): the stored
//! and served content type, the `mimeTypes` check and the extension of a name without one all
//! come from the content, never from what the client claims.

/// How many leading bytes detection reads.
pub const SNIFF_LEN: usize = 3072;

/// The detected MIME type (with `; charset=utf-8` for text, as PocketBase stores it) and the
/// extension (with its dot, "" when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub mime: String,
    pub ext: String,
}

/// Detects the type of content starting with `head`.
pub fn detect(head: &[u8]) -> Detected {
    let d = |mime: &str, ext: &str| Detected {
        mime: mime.to_string(),
        ext: ext.to_string(),
    };
    if head.is_empty() {
        return d("text/plain; charset=utf-8", ".txt");
    }
    if let Some(kind) = infer::get(head) {
        let mime = match kind.mime_type() {
            // Go's mimetype names these differently.
            "image/vnd.microsoft.icon" => "image/x-icon",
            "audio/x-wav" => "audio/wav",
            m => m,
        };
        let ext = match mime {
            "image/jpeg" => ".jpg".to_string(),
            _ => format!(".{}", kind.extension()),
        };
        return Detected {
            mime: mime.to_string(),
            ext,
        };
    }
    if !is_text(head) {
        return d("application/octet-stream", "");
    }
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let lower = trimmed
        .chars()
        .take(512)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("<svg") || (lower.starts_with("<?xml") && lower.contains("<svg")) {
        return d("image/svg+xml", ".svg");
    }
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return d("text/html; charset=utf-8", ".html");
    }
    if lower.starts_with("<?xml") {
        return d("text/xml; charset=utf-8", ".xml");
    }
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(trimmed).is_ok()
    {
        return d("application/json", ".json");
    }
    d("text/plain; charset=utf-8", ".txt")
}

/// Text: valid UTF-8 (a multi-byte character cut at the end of the window is fine) without
/// the control bytes binary formats are full of.
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    valid
        && !head
            .iter()
            .any(|&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x1b))
}

/// Whether `mime` is `expected` (case-insensitive, parameters ignored, aliases accepted), as
/// Go's `mimetype.MIME.Is`.
pub fn mime_is(mime: &str, expected: &str) -> bool {
    let base = |m: &str| {
        m.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let (m, e) = (base(mime), base(expected));
    if m == e {
        return true;
    }
    const ALIASES: &[(&str, &str)] = &[
        ("image/jpeg", "image/jpg"),
        ("image/x-icon", "image/vnd.microsoft.icon"),
        ("application/pdf", "application/x-pdf"),
        ("audio/wav", "audio/x-wav"),
        ("audio/mpeg", "audio/mp3"),
        ("application/zip", "application/x-zip-compressed"),
        ("text/xml", "application/xml"),
        ("application/json", "text/json"),
    ];
    ALIASES
        .iter()
        .any(|(a, b)| (m == *a && e == *b) || (m == *b && e == *a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_the_type() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(detect(png).mime, "image/png");
        assert_eq!(detect(b"\xff\xd8\xff\xe0\0\x10JFIF").ext, ".jpg");
        assert_eq!(detect(b"hello world\n").mime, "text/plain; charset=utf-8");
        assert_eq!(detect(b"{\"a\": 1}").mime, "application/json");
        assert_eq!(detect(b"<svg xmlns='x'></svg>").mime, "image/svg+xml");
        assert_eq!(detect(b"<!DOCTYPE html><p>").ext, ".html");
        assert_eq!(
            detect(&[0u8, 1, 2, 3, 200]).mime,
            "application/octet-stream"
        );
        // A PNG named .txt by the client is still a PNG.
        assert!(mime_is(&detect(png).mime, "image/png"));
        assert!(mime_is("text/plain; charset=utf-8", "text/plain"));
        assert!(mime_is("image/jpeg", "image/jpg"));
        assert!(!mime_is("image/png", "image/jpeg"));
    }
}
