//! Email and URL format checks with the acceptance PocketBase shows for its `email` and `url`
//! fields (it delegates to govalidator's `IsEmail` and `IsURL`). Written from the observed
//! behaviour of PocketBase 0.40.6, not translated from its regular expressions; the tests list
//! the cases that were checked against it. Pure functions only.

/// Characters allowed in an unquoted email local part besides ASCII letters and digits.
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

/// Non-ASCII characters govalidator treats like letters in emails and hosts.
fn is_intl(c: char) -> bool {
    matches!(c, '\u{A0}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFEF}')
}

/// True for a syntactically valid email address (no DNS lookups).
pub fn is_email(s: &str) -> bool {
    let Some(at) = s.rfind('@') else {
        return false;
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    local_part_ok(local) && email_domain_ok(domain)
}

fn local_part_ok(local: &str) -> bool {
    if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') {
        let inner = &local[1..local.len() - 1];
        return inner
            .chars()
            .all(|c| c != '"' && c != '\\' && c != '\r' && c != '\n');
    }
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c) || is_intl(c))
        })
}

fn email_domain_ok(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = domain.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    let letter = |c: char| c.is_ascii_alphabetic() || is_intl(c);
    let alnum = |c: char| c.is_ascii_alphanumeric() || is_intl(c);
    let inner = |c: char| alnum(c) || matches!(c, '-' | '_' | '~');
    rest.iter()
        .all(|label| edges_and_inner(label, alnum, inner))
        && edges_and_inner(tld, letter, inner)
}

/// True when `label` is non-empty, starts and ends with an `edge` character and has only
/// `inner` characters in between.
fn edges_and_inner(label: &str, edge: impl Fn(char) -> bool, inner: impl Fn(char) -> bool) -> bool {
    let mut chars = label.chars();
    let (Some(first), last) = (chars.next(), label.chars().last()) else {
        return false;
    };
    edge(first) && last.is_some_and(&edge) && label.chars().all(|c| edge(c) || inner(c))
}

/// The domain part of an email, compared as-is (case-sensitive) with `onlyDomains` and
/// `exceptDomains`.
pub fn email_domain(s: &str) -> &str {
    s.rfind('@').map_or("", |at| &s[at + 1..])
}

/// Schemes a URL may carry; without one, a bare host such as `example.com` is accepted too.
const URL_SCHEMES: [&str; 7] = ["ftp", "tcp", "udp", "ws", "wss", "http", "https"];

/// True for a valid URL.
pub fn is_url(s: &str) -> bool {
    if s.is_empty() || s.chars().count() >= 2083 || s.len() <= 3 || s.starts_with('.') {
        return false;
    }
    if s.chars().any(char::is_whitespace) {
        return false;
    }
    let rest = match s.find("://") {
        Some(i) if URL_SCHEMES.contains(&&s[..i]) => &s[i + 3..],
        Some(_) => return false,
        None => {
            // Without a scheme or a colon the whole text would be a path to Go's URL parser,
            // which PocketBase accepts only when it has a dot in it ("localhost" is rejected).
            let path = s.split(['?', '#']).next().unwrap_or("");
            if !s.contains(':') && !path.contains('.') {
                return false;
            }
            s
        }
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = match authority.rfind('@') {
        Some(at) if at > 0 => &authority[at + 1..],
        Some(_) => return false,
        None => authority,
    };
    let host = match host_port.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            host
        }
        _ => host_port,
    };
    is_url_host(host)
}

fn is_url_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.contains(':')
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if is_url_ipv4(host) {
        return true;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let alnum = |c: char| c.is_ascii_alphanumeric() || (c as u32 >= 0xA1 && c as u32 <= 0xFFFF);
    let letter = |c: char| c.is_ascii_alphabetic() || (c as u32 >= 0xA1 && c as u32 <= 0xFFFF);
    match labels.split_last() {
        Some((only, [])) => edges_and_inner(only, alnum, |c| alnum(c) || c == '-' || c == '_'),
        Some((tld, rest)) => {
            tld.chars().all(letter)
                && !tld.is_empty()
                && rest
                    .iter()
                    .all(|l| edges_and_inner(l, alnum, |c| alnum(c) || c == '-' || c == '_'))
        }
        None => false,
    }
}

/// A dotted IPv4 address whose first octet is a usable unicast/reserved one (1-223, 240-255).
fn is_url_ipv4(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() != 4 {
        return false;
    }
    let mut octets = Vec::with_capacity(4);
    for p in &parts {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        match p.parse::<u16>() {
            Ok(n) if n <= 255 => octets.push(n),
            _ => return false,
        }
    }
    matches!(octets[0], 1..=223 | 240..=255)
}

/// The host (with port) of a URL that has a scheme, compared as-is with the field's domain
/// lists; "" for scheme-less URLs, whose host Go's parser does not recognise.
pub fn url_host(s: &str) -> &str {
    let Some(i) = s.find("://") else {
        return "";
    };
    let rest = &s[i + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_checked_against_pocketbase() {
        // Each case was sent to PocketBase 0.40.6.
        for ok in [
            "a@x.com",
            "A@X.COM",
            "a+b@c.io",
            "a@sub.bad.com",
            "x.y@z.co.uk",
        ] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "bad",
            "John <a@b.com>",
            "a@b",
            " a@b.com",
            "a.@b.com",
            "a@b..com",
            "123",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(email_domain("a@BAD.com"), "BAD.com");
    }

    #[test]
    fn urls_checked_against_pocketbase() {
        // Each case was sent to PocketBase 0.40.6.
        let valid = [
            "https://x.com",
            "http://x.com/a?b=c#d",
            "x.com",
            "https://x.com:8080",
            "ftp://x.com",
            "https://X.COM",
            "http://localhost:3000",
            "http://1.2.3.4",
            "mailto:a@b.com",
            "http://x",
            "http://user:pw@x.com",
            "x.com/path",
            "www.google.com",
            "http://[::1]:80",
            "https://münchen.de",
            "http://x_y.com",
            "http://x.com/ä",
            "tcp://x.y",
            "a.bc",
            "x.com:80",
            "http://a-b.c-d.com",
            "http://123",
        ];
        for ok in valid {
            assert!(is_url(ok), "{ok}");
        }
        let invalid = [
            "localhost",
            "https://",
            "not a url",
            "https://a b.com",
            "//x.com",
            "http://-x.com",
            "abc",
            "https://x.com/a b",
            "javascript:alert(1)",
            "a.b",
            "http://a..b",
            "http://x.c0m",
            "http://x.com:123456",
            "http://1.2.3.256",
            "http://0.1.2.3",
            "foo://x.com",
            "abcd",
            "http://x-.com",
            "http://xx-.com",
            "http://a.b-c",
            "http://1.2.3",
        ];
        for bad in invalid {
            assert!(!is_url(bad), "{bad}");
        }
    }

    #[test]
    fn url_hosts_keep_port_and_case() {
        assert_eq!(url_host("https://x.com"), "x.com");
        assert_eq!(url_host("https://x.com:8080/p"), "x.com:8080");
        assert_eq!(url_host("https://a@x.com/p"), "x.com");
        assert_eq!(url_host("https://X.COM"), "X.COM");
        assert_eq!(url_host("x.com"), "");
    }
}
