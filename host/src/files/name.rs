//! File names as PocketBase makes them: the uploaded name reduced to its base, cleaned to a
//! snake_case stem and a safe extension, with a random suffix so names never collide and are
//! hard to guess. Also the thumb size syntax (`WxH`, `WxHt`, `WxHb`, `WxHf`, `0xH`, `Wx0`).

use crate::store::schema::{LOWER_ALNUM, random_string};

/// Longest accepted stored file name (PocketBase checks 1–150 characters).
pub const MAX_NAME_LEN: usize = 150;

/// The name a multipart part declares, as Go's `multipart.Part.FileName` returns it: the last
/// path element (so `../../etc/passwd` is `passwd`; a name of only separators is `/`).
pub fn base_name(declared: &str) -> String {
    let trimmed = declared.trim_end_matches('/');
    if trimmed.is_empty() {
        return if declared.is_empty() {
            ".".into()
        } else {
            "/".into()
        };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// PocketBase's `normalizeName`: `snake_case_stem_<10 random>.ext`, the extension cleaned (or
/// taken from the detected type when the name has none).
pub fn normalize(original: &str, detected_ext: &str) -> String {
    let mut name = original;
    if name.len() > 300 {
        let mut cut = name.len() - 300;
        while !name.is_char_boundary(cut) {
            cut += 1;
        }
        name = &name[cut..];
    }
    let original_ext = extract_extension(name);
    let cleaned: String = original_ext
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.*-+=#".contains(*c))
        .collect();
    let mut ext = format!(".{}", cleaned.trim_matches('.'));
    if ext == "." {
        ext = detected_ext.to_string();
    }
    if ext.len() > 20 {
        ext = format!(".{}", ext[ext.len() - 20..].trim_matches('.'));
    }
    let stem = name.strip_suffix(original_ext).unwrap_or(name);
    let mut clean = snakecase(stem.trim_matches('.'));
    if clean.len() < 3 {
        clean.push_str(&random_string(10, LOWER_ALNUM));
    } else if clean.len() > 100 {
        clean.truncate(100);
    }
    format!("{clean}_{}{ext}", random_string(10, LOWER_ALNUM))
}

/// The extension with its dot, double extensions included (`.tar.gz`); "" when none.
fn extract_extension(name: &str) -> &str {
    let Some(primary) = name.rfind('.') else {
        return "";
    };
    match name[..primary].rfind('.') {
        Some(secondary) => &name[secondary..],
        None => &name[primary..],
    }
}

/// PocketBase's `inflector.Snakecase`: split at anything that is not an ASCII letter or digit,
/// `_` between the words and before an upper-case letter that follows a lower-case one.
fn snakecase(s: &str) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('_');
        }
        let bytes = word.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b.is_ascii_uppercase() && i > 0 && !bytes[i - 1].is_ascii_uppercase() {
                out.push('_');
            }
            out.push(b as char);
        }
    }
    out.to_ascii_lowercase()
}

/// Whether a stored name is a plain file name PocketBase accepts (`^[^./\\][^/\\]+$`, 1–150).
pub fn is_valid_stored(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && !matches!(first, '.' | '/' | '\\')
        && name.chars().count() >= 2
        && !name.contains(['/', '\\'])
}

/// How a thumb is cut from the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThumbMode {
    /// Fill WxH, cropping from the center.
    Center,
    Top,
    Bottom,
    /// Fit inside WxH without cropping.
    Fit,
}

/// A parsed thumb size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbSize {
    pub width: u32,
    pub height: u32,
    pub mode: ThumbMode,
}

impl ThumbSize {
    /// Parses `^(\d+)x(\d+)(t|b|f)?$`.
    pub fn parse(s: &str) -> Option<ThumbSize> {
        let (w, rest) = s.split_once('x')?;
        let (h, mode) = match rest.as_bytes().last()? {
            b't' => (&rest[..rest.len() - 1], ThumbMode::Top),
            b'b' => (&rest[..rest.len() - 1], ThumbMode::Bottom),
            b'f' => (&rest[..rest.len() - 1], ThumbMode::Fit),
            _ => (rest, ThumbMode::Center),
        };
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if !digits(w) || !digits(h) {
            return None;
        }
        Some(ThumbSize {
            width: w.parse().ok()?,
            height: h.parse().ok()?,
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(name: &str) -> (String, String) {
        // stem_<10 random>.ext → (stem, ext)
        let (head, ext) = match name.find('.') {
            Some(i) => (&name[..i], &name[i..]),
            None => (name, ""),
        };
        let (stem, random) = head.rsplit_once('_').expect("random suffix");
        assert_eq!(random.len(), 10, "{name}");
        (stem.to_string(), ext.to_string())
    }

    #[test]
    fn names_are_cleaned_as_pocketbase_cleans_them() {
        assert_eq!(
            shape(&normalize("My Photo.PNG", ".png")),
            ("my_photo".into(), ".PNG".into())
        );
        assert_eq!(
            shape(&normalize("archive.tar.gz", "")),
            ("archive".into(), ".tar.gz".into())
        );
        assert_eq!(
            shape(&normalize("myTestDB.txt", "")),
            ("my_test_db".into(), ".txt".into())
        );
        assert_eq!(
            shape(&normalize("notes", ".txt")),
            ("notes".into(), ".txt".into())
        );
        // Too short a stem gets a random part of its own.
        let (stem, ext) = shape(&normalize("a.txt", ""));
        assert_eq!((stem.len(), ext.as_str()), (11, ".txt"));
        assert!(normalize("ünïcödé.txt", "").is_ascii());
    }

    #[test]
    fn path_separators_never_reach_a_stored_name() {
        assert_eq!(base_name("../../etc/passwd"), "passwd");
        assert_eq!(base_name("dir/sub/"), "sub");
        for evil in [
            "../../etc/passwd",
            "..\\..\\boot.ini",
            "/",
            "a/.hidden",
            "..",
        ] {
            let n = normalize(&base_name(evil), "");
            assert!(is_valid_stored(&n), "{evil} → {n}");
        }
    }

    #[test]
    fn thumb_sizes_parse_like_pocketbase() {
        let t = |s| ThumbSize::parse(s);
        assert_eq!(
            t("100x50").map(|t| (t.width, t.height, t.mode)),
            Some((100, 50, ThumbMode::Center))
        );
        assert_eq!(t("0x50t").map(|t| t.mode), Some(ThumbMode::Top));
        assert_eq!(t("10x0b").map(|t| t.mode), Some(ThumbMode::Bottom));
        assert_eq!(t("10x10f").map(|t| t.mode), Some(ThumbMode::Fit));
        for bad in [
            "", "x", "10x", "x10", "10x10x", "10X10", "-1x10", "10x10g", " 10x10",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
