//! The `fields` picker's `:excerpt(max, withEllipsis)` modifier: plain text from an HTML value,
//! as PocketBase's `excerptModifier` makes it.
//!
//! PocketBase parses the value as an HTML document and walks it: text is kept with runs of
//! ASCII whitespace collapsed to one space, block elements are separated by a space (inline
//! ones such as `<b>` or `<a>` are not), and the content of elements like `<script>`,
//! `<style>` or `<svg>` is dropped. The text is trimmed, cut to `max` characters, trimmed
//! again (so no space is left before the ellipsis) and given `...` when it was cut. This is a
//! small tokenizer with the same outcome for the markup an editor field holds; character
//! references are decoded for the common named ones and all numeric ones.

/// Elements whose content never appears in an excerpt.
const EXCLUDED: [&str; 18] = [
    "head", "style", "script", "iframe", "embed", "applet", "object", "svg", "img", "picture",
    "dialog", "template", "button", "form", "textarea", "input", "select", "option",
];

/// Elements that do not separate words.
const INLINE: [&str; 21] = [
    "a", "abbr", "acronym", "b", "bdo", "big", "br", "button", "cite", "code", "em", "i", "label",
    "q", "small", "span", "strong", "strike", "sub", "sup", "time",
];

/// Elements that never have content (so they never open an excluded section).
const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// The excerpt of `html`: at most `max` characters of its text, `...` appended when cut.
pub fn excerpt(html: &str, max: usize, ellipsis: bool) -> String {
    let text = plain_text(html);
    let text = text.trim();
    if text.len() <= max || text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    let mut out = cut.trim().to_string();
    if ellipsis {
        out.push_str("...");
    }
    out
}

/// The document's text with PocketBase's spacing rules (untrimmed).
fn plain_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut prev_space = false;
    let mut rest = html;
    // Inside an excluded element: its name and nesting depth.
    let mut skipping: Option<(String, usize)> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skipping.is_none() {
                push_text(&mut out, &mut prev_space, rest);
            }
            break;
        };
        if lt > 0 && skipping.is_none() {
            push_text(&mut out, &mut prev_space, &rest[..lt]);
        }
        rest = &rest[lt..];
        let Some(tag) = Tag::parse(rest) else {
            // A '<' that starts no tag is text, as in HTML.
            if skipping.is_none() {
                push_text(&mut out, &mut prev_space, "<");
            }
            rest = &rest[1..];
            continue;
        };
        rest = &rest[tag.len..];
        let Some(name) = tag.name else {
            continue; // a comment, doctype or processing instruction
        };
        if let Some((skip_name, depth)) = &mut skipping {
            if *skip_name == name {
                if tag.closing {
                    *depth -= 1;
                    if *depth == 0 {
                        skipping = None;
                    }
                } else if !tag.self_closing {
                    *depth += 1;
                }
            }
            continue;
        }
        // Excluded elements vanish whole: no content and no word break.
        if EXCLUDED.contains(&name.as_str()) {
            if !tag.closing && !tag.self_closing && !VOID.contains(&name.as_str()) {
                skipping = Some((name, 1));
            }
            continue;
        }
        if !INLINE.contains(&name.as_str()) && !prev_space {
            out.push(' ');
            prev_space = true;
        }
    }
    out
}

/// Appends a text run: character references decoded, ASCII whitespace runs collapsed, and no
/// leading space right after one.
fn push_text(out: &mut String, prev_space: &mut bool, raw: &str) {
    let decoded = decode_entities(raw);
    let mut txt = String::with_capacity(decoded.len());
    let mut in_ws = false;
    for c in decoded.chars() {
        // Go's `\s`: tab, newline, form feed, carriage return, space.
        if matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ') {
            if !in_ws {
                txt.push(' ');
            }
            in_ws = true;
        } else {
            txt.push(c);
            in_ws = false;
        }
    }
    let txt = if *prev_space {
        txt.trim_start_matches(' ')
    } else {
        &txt
    };
    if !txt.is_empty() {
        *prev_space = txt.ends_with(' ');
        out.push_str(txt);
    }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map_or(rest.len(), |i| i + 1);
        let name = &rest[1..end];
        let decoded = match name.strip_prefix('#') {
            Some(num) => {
                let code = match num.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => num.parse::<u32>().ok(),
                };
                code.map(|c| char::from_u32(c).unwrap_or('\u{fffd}'))
            }
            None => match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => None,
            },
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A tag at the start of the text.
struct Tag {
    /// Lowercased element name; `None` for comments and declarations.
    name: Option<String>,
    closing: bool,
    self_closing: bool,
    /// Bytes the tag spans.
    len: usize,
}

impl Tag {
    fn parse(s: &str) -> Option<Tag> {
        let body = s.strip_prefix('<')?;
        if let Some(after) = body.strip_prefix("!--") {
            let len = after.find("-->").map_or(s.len(), |i| 4 + i + 3);
            return Some(Tag {
                name: None,
                closing: false,
                self_closing: false,
                len,
            });
        }
        if body.starts_with(['!', '?']) {
            let len = body.find('>').map_or(s.len(), |i| i + 2);
            return Some(Tag {
                name: None,
                closing: false,
                self_closing: false,
                len,
            });
        }
        let (closing, body) = match body.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, body),
        };
        if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let name_len = body
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .unwrap_or(body.len());
        let name = body[..name_len].to_ascii_lowercase();
        let end = tag_end(&body[name_len..]).map(|i| name_len + i)?;
        let self_closing = body[..end].ends_with('/');
        Some(Tag {
            name: Some(name),
            closing,
            self_closing,
            len: s.len() - body.len() + end + 1,
        })
    }
}

/// Offset of the `>` that ends a tag's attributes (quoted values may hold `>`).
fn tag_end(attrs: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in attrs.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_before_the_ellipsis() {
        // PocketBase 0.40.6: "Hello big...", not "Hello big ...".
        let html = "<p>Hello   <b>big</b> world of things</p>";
        assert_eq!(excerpt(html, 10, true), "Hello big...");
        assert_eq!(excerpt(html, 8, true), "Hello bi...");
        assert_eq!(excerpt(html, 8, false), "Hello bi");
        assert_eq!(excerpt(html, 100, true), "Hello big world of things");
        assert_eq!(excerpt("short", 5, true), "short");
    }

    #[test]
    fn blocks_separate_words_inline_elements_do_not() {
        assert_eq!(
            excerpt("<p>one</p><p>two</p><b>th</b>ree<br>four", 100, false),
            "one two threefour"
        );
        assert_eq!(
            excerpt("<div>a<script>var x = '<p>';</script>b</div>", 100, false),
            "ab"
        );
        assert_eq!(
            excerpt(
                "x <!-- hidden --> &amp; &lt;y&gt; &#65;&#x42; &nope;",
                100,
                false
            ),
            "x & <y> AB &nope;"
        );
        assert_eq!(excerpt("a < b", 100, false), "a < b");
        assert_eq!(excerpt("a<img src='x>y'>caption", 100, false), "acaption");
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert_eq!(excerpt("héllo wörld", 5, true), "héllo...");
    }
}
