//! What a mail is before it is sent: a [`Message`] (recipients, subject, HTML and plain text),
//! and how PocketBase's templates become one — placeholders (`{APP_NAME}`, `{APP_URL}`,
//! `{TOKEN}`, `{OTP}`, `{OTP_ID}`, `{RECORD:field}`), the HTML layout every system mail is
//! wrapped in, and the plain-text alternative derived from the HTML. Pure: no I/O.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::schema::{Collection, EmailTemplate, FieldKind};

/// The HTML page PocketBase wraps every system mail's body in (`mails/templates/layout.go`).
const LAYOUT: &str = include_str!("layout.html");

/// A mailbox: an address with an optional display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default)]
    pub name: String,
    pub address: String,
}

/// One mail, ready to send. `from: None` means the sender in the settings (`meta.senderName`,
/// `meta.senderAddress`) at the time it is sent, so fixing the settings fixes queued mails too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub from: Option<Address>,
    pub to: Vec<Address>,
    pub subject: String,
    pub html: String,
    #[serde(default)]
    pub text: String,
}

impl Message {
    /// A system mail to `to`, with the plain-text part derived from `html`.
    pub fn system(to: &str, subject: String, html: String) -> Message {
        Message {
            from: None,
            to: vec![Address {
                name: String::new(),
                address: to.to_string(),
            }],
            text: html_to_text(&html),
            subject,
            html,
        }
    }
}

/// The settings a template reads (`meta.appName`, `meta.appURL`).
pub struct AppMeta {
    pub name: String,
    pub url: String,
}

impl AppMeta {
    pub fn from_settings(settings: &Value) -> AppMeta {
        let get = |k: &str| {
            settings
                .pointer(&format!("/meta/{k}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        AppMeta {
            name: get("appName"),
            url: get("appURL"),
        }
    }
}

/// Fills `template` for `record` of `collection` (its visible fields as `{RECORD:name}`, HTML
/// escaped except dates, booleans and numbers) plus `extra` placeholders, and wraps the body in
/// the layout. Returns (subject, html).
pub fn render(
    template: &EmailTemplate,
    meta: &AppMeta,
    collection: &Collection,
    record: &serde_json::Map<String, Value>,
    extra: &[(&str, &str)],
) -> (String, String) {
    let mut placeholders: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    placeholders.push(("{APP_NAME}".into(), meta.name.clone()));
    placeholders.push(("{APP_URL}".into(), meta.url.clone()));
    for f in collection.fields.iter().filter(|f| !f.hidden) {
        let raw = match record.get(&f.name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
        };
        let plain = matches!(
            f.kind,
            FieldKind::Autodate(_) | FieldKind::Date(_) | FieldKind::Bool(_) | FieldKind::Number(_)
        );
        let value = if plain { raw } else { escape_html(&raw) };
        placeholders.push((format!("{{RECORD:{}}}", f.name), value));
    }
    let (mut subject, mut body) = (template.subject.clone(), template.body.clone());
    for (k, v) in &placeholders {
        subject = subject.replace(k.as_str(), v);
        body = body.replace(k.as_str(), v);
    }
    (subject, LAYOUT.replace("{CONTENT}", &body))
}

/// Escapes text for HTML as Go's `html.EscapeString` does.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            c => out.push(c),
        }
    }
    out
}

/// A plain-text rendering of an HTML mail, as PocketBase derives the text part: block elements
/// start new lines, links become `[text](href)`, style and script contents are dropped.
pub fn html_to_text(html: &str) -> String {
    const SKIP: &[&str] = &[
        "style", "script", "head", "title", "svg", "button", "template",
    ];
    const INLINE: &[&str] = &[
        "a", "span", "small", "strike", "strong", "sub", "sup", "em", "b", "u", "i",
    ];
    let mut out = String::new();
    let mut skipping: Option<String> = None;
    let mut link: Option<(String, String)> = None;
    let mut rest = html;
    while !rest.is_empty() {
        let (text, after) = match rest.find('<') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if skipping.is_none() && !text.is_empty() {
            let collapsed = collapse_ws(&decode_entities(text));
            let target = match &mut link {
                Some((_, t)) => t,
                None => &mut out,
            };
            let at_line_start = target.is_empty() || target.ends_with('\n');
            let piece = if at_line_start {
                collapsed.trim_start()
            } else {
                &collapsed
            };
            target.push_str(piece);
        }
        if after.is_empty() {
            break;
        }
        let Some(end) = after.find('>') else { break };
        let tag = &after[1..end];
        rest = &after[end + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(s) = &skipping {
            if closing && *s == name {
                skipping = None;
            }
            continue;
        }
        if SKIP.contains(&name.as_str()) && !closing && !tag.ends_with('/') {
            skipping = Some(name);
            continue;
        }
        if name == "a" {
            if closing {
                if let Some((href, text)) = link.take() {
                    let text = text.trim();
                    out.push('[');
                    out.push_str(if text.is_empty() { "LINK" } else { text });
                    out.push(']');
                    if !href.is_empty() {
                        out.push('(');
                        out.push_str(&href);
                        out.push(')');
                    }
                }
            } else {
                link = Some((attribute(tag, "href"), String::new()));
            }
            continue;
        }
        if name == "br" || (!INLINE.contains(&name.as_str()) && !name.is_empty()) {
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
            if !out.is_empty() && !out.ends_with('\n') {
                out.push_str("\r\n");
            }
        }
    }
    out.trim().to_string()
}

fn collapse_ws(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for ch in s.chars() {
        if ch.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(ch);
            space = false;
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in a tag's text (quoted with " or ').
fn attribute(tag: &str, name: &str) -> String {
    let lower = tag.to_ascii_lowercase();
    let Some(i) = lower.find(&format!("{name}=")) else {
        return String::new();
    };
    let rest = &tag[i + name.len() + 1..];
    let quote = rest.chars().next().unwrap_or(' ');
    if quote == '"' || quote == '\'' {
        rest[1..]
            .split(quote)
            .next()
            .map(decode_entities)
            .unwrap_or_default()
    } else {
        rest.split_whitespace()
            .next()
            .map(decode_entities)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_placeholders_and_escape_record_text() {
        let mut c = crate::store::schema::Collection {
            id: "c".into(),
            name: "users".into(),
            kind: crate::store::schema::CollectionType::Auth,
            system: false,
            fields: vec![crate::store::schema::Field::primary_id()],
            indexes: vec![],
            list_rule: None,
            view_rule: None,
            create_rule: None,
            update_rule: None,
            delete_rule: None,
            auth: None,
            view_query: None,
            created: String::new(),
            updated: String::new(),
            sql: Default::default(),
        };
        c.fields.push(crate::store::schema::Field::new(
            "name",
            FieldKind::Text(Default::default()),
        ));
        let template = EmailTemplate {
            subject: "Hi {RECORD:name} from {APP_NAME}".into(),
            body: "<p>{APP_URL}/x/{TOKEN}</p>".into(),
        };
        let mut rec = serde_json::Map::new();
        rec.insert("name".into(), Value::String("<Ann>".into()));
        let meta = AppMeta {
            name: "Acme".into(),
            url: "http://h".into(),
        };
        let (subject, html) = render(&template, &meta, &c, &rec, &[("{TOKEN}", "t0k")]);
        assert_eq!(subject, "Hi &lt;Ann&gt; from Acme");
        assert!(html.contains("<p>http://h/x/t0k</p>"), "{html}");
        assert!(html.starts_with("\n<!DOCTYPE html"));
    }

    #[test]
    fn plain_text_keeps_links_and_paragraphs() {
        let html = "<html><head><style>p{}</style></head><body><p>Hello,</p>\n<p>Click <a class=\"btn\" href=\"http://x/y?a=1&amp;b=2\">Verify</a></p></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello,\r\nClick [Verify](http://x/y?a=1&b=2)"
        );
    }
}
