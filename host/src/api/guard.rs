//! What every request passes before its handler: connections beyond `--max-connections` get a
//! 503 (health checks still answer), the client's IP is found (through the trusted proxy
//! headers of the settings), and PocketBase's rate limits apply (settings `rateLimits`, with
//! its labels, audiences, fixed windows and 429 answer). The node's password gate lives here
//! too, so handlers that run bcrypt share one fair queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{CONNECTION, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use super::AppState;
use super::error::ApiError;
use super::extract::token_in;
use crate::access::{Auth, authenticate};
use crate::auth::gate::PasswordGate;
use crate::net::ConnInfo;
use crate::settings::{RateLimitRule, Settings};
use crate::store::Collection;

/// The node's request guards.
pub struct Guard {
    rates: RateLimiter,
    /// Fair, bounded bcrypt work (`auth::gate`).
    pub passwords: Arc<PasswordGate>,
}

impl Guard {
    /// Guards configured from the node's settings.
    pub fn new(settings: &Settings) -> Guard {
        let guard = Guard {
            rates: RateLimiter::default(),
            passwords: PasswordGate::for_this_machine(),
        };
        guard.settings_changed(settings);
        guard
    }

    /// Takes new settings: rate limit counters start over when the rules change, as in
    /// PocketBase.
    pub fn settings_changed(&self, s: &Settings) {
        self.rates.configure(s);
    }

    /// PocketBase's per-collection check, for a batch's sub-requests (each is limited as if
    /// it came alone).
    pub fn check_collection(
        &self,
        ip: &str,
        auth: &Auth,
        c: &Collection,
        route: (&Method, &str),
        tag: &'static str,
    ) -> Result<(), ApiError> {
        self.rates.check_collection(ip, auth, c, route, &[tag])
    }

    /// The client's IP as the current `trustedProxy` settings read it (for the request logs).
    pub fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> String {
        real_ip(&self.rates.config.load().settings, headers, peer)
    }
}

/// The client's IP as the node sees it: the socket peer, or what the trusted proxy headers
/// name. Empty when unknown.
#[derive(Debug, Clone, Default)]
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientIp>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The middleware: capacity, client IP, rate limits.
pub async fn guard(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    // Absent when the router is served without connection info (in-process tests).
    let conn = req.extensions().get::<ConnectInfo<ConnInfo>>().map(|c| c.0);
    let over_capacity = conn.as_ref().is_some_and(|c| c.over_capacity);
    if over_capacity {
        let mut res = if req.uri().path() == "/api/health" {
            next.run(req).await
        } else {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server has too many open connections; try again later.",
            )
            .into_response()
        };
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let config = st.guard.rates.config.load_full();
    let ip = conn
        .map(|c| real_ip(&config.settings, req.headers(), c.remote.ip()))
        .unwrap_or_default();
    req.extensions_mut().insert(ClientIp(ip.clone()));
    if config.settings.rate_limits.enabled {
        // Owned copies: the request body is not `Sync`, so no borrow of it crosses an await.
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let token = token_in(req.headers());
        if let Err(e) = st
            .guard
            .rates
            .check_request(&st, &ip, &method, &path, token)
            .await
        {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// Refuses a request whose declared body is larger than the limit with 413 before anything
/// reads it (a multipart upload would otherwise be refused by whatever its parser meets
/// first). Bodies without a declared length are cut at the limit while being read
/// (`DefaultBodyLimit`), with the same answer.
pub async fn body_limit(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        let mut res = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large.")
            .into_response();
        // The unread body stays on the socket: close rather than read it.
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    next.run(req).await
}

/// PocketBase's `RealIP`: the last (or, with `useLeftmostIP`, the first) valid address in the
/// first trusted proxy header present, else the socket peer.
fn real_ip(s: &Settings, headers: &HeaderMap, peer: IpAddr) -> String {
    for name in &s.trusted_proxy.headers {
        let Some(value) = headers
            .get_all(name.as_str())
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        let mut ips = value.split(',').map(str::trim);
        let found = if s.trusted_proxy.use_leftmost_ip {
            ips.find_map(|ip| ip.parse::<IpAddr>().ok())
        } else {
            ips.rev().find_map(|ip| ip.parse::<IpAddr>().ok())
        };
        if let Some(ip) = found {
            return ip.to_string();
        }
    }
    peer.to_string()
}

/// Whether `ip` is one of the listed addresses or inside one of the listed subnets.
fn ip_in_list(list: &[String], ip: &str) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    list.iter().any(|item| match item.split_once('/') {
        Some((net, bits)) => match (net.parse::<IpAddr>(), bits.parse::<u32>()) {
            (Ok(IpAddr::V4(n)), Ok(b)) if b <= 32 => match ip {
                IpAddr::V4(a) => {
                    let mask = u32::MAX.checked_shl(32 - b).unwrap_or(0);
                    u32::from(a) & mask == u32::from(n) & mask
                }
                IpAddr::V6(_) => false,
            },
            (Ok(IpAddr::V6(n)), Ok(b)) if b <= 128 => match ip {
                IpAddr::V6(a) => {
                    let mask = u128::MAX.checked_shl(128 - b).unwrap_or(0);
                    u128::from(a) & mask == u128::from(n) & mask
                }
                IpAddr::V4(_) => false,
            },
            _ => false,
        },
        None => item.parse::<IpAddr>().is_ok_and(|a| a == ip),
    })
}

/// The auth actions of auth collections and PocketBase's tags for them.
const AUTH_ACTIONS: [(&str, &[&str]); 12] = [
    ("auth-methods", &["listAuthMethods"]),
    ("auth-refresh", &["authRefresh"]),
    ("auth-with-password", &["authWithPassword", "auth"]),
    ("auth-with-oauth2", &["authWithOAuth2", "auth"]),
    ("request-otp", &["requestOTP"]),
    ("auth-with-otp", &["authWithOTP", "auth"]),
    ("request-password-reset", &["requestPasswordReset"]),
    ("confirm-password-reset", &["confirmPasswordReset"]),
    ("request-verification", &["requestVerification"]),
    ("confirm-verification", &["confirmVerification"]),
    ("request-email-change", &["requestEmailChange"]),
    ("confirm-email-change", &["confirmEmailChange"]),
];

/// A request on a collection's records, auth actions or files: its collection, a route name
/// and PocketBase's tags.
fn collection_route<'a>(
    method: &Method,
    path: &'a str,
) -> Option<(&'a str, &'static str, &'static [&'static str])> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "api", "collections", c, "records"] => match *method {
            Method::GET => Some((c, "records", &["list"])),
            Method::POST => Some((c, "records", &["create"])),
            _ => None,
        },
        ["", "api", "collections", c, "records", _] => match *method {
            Method::GET => Some((c, "records/{id}", &["view"])),
            Method::PATCH => Some((c, "records/{id}", &["update"])),
            Method::DELETE => Some((c, "records/{id}", &["delete"])),
            _ => None,
        },
        ["", "api", "collections", c, action] => AUTH_ACTIONS
            .iter()
            .find(|(a, _)| a == action)
            .map(|(a, tags)| (*c, *a, *tags)),
        ["", "api", "files", c, _, _] if method == Method::GET => Some((c, "files", &["file"])),
        _ => None,
    }
}

/// One window of one client of one limiter.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    available: i64,
}

/// Fixed windows per client key, as PocketBase's `rateLimiter`.
struct Limiter {
    max: i64,
    interval: i64,
    clients: HashMap<String, Window>,
    /// Clients kept before expired windows are swept: doubles with the live clients, so a
    /// sweep costs amortised constant time per new client.
    sweep_at: usize,
}

impl Limiter {
    /// The first sweep threshold.
    const SWEEP_AT: usize = 4096;

    fn new(max: i64, interval: i64) -> Limiter {
        Limiter {
            max,
            interval: interval.max(1),
            clients: HashMap::new(),
            sweep_at: Self::SWEEP_AT,
        }
    }

    fn allow(&mut self, key: &str, now: i64) -> bool {
        if self.clients.len() >= self.sweep_at && !self.clients.contains_key(key) {
            let interval = self.interval;
            self.clients.retain(|_, w| now - w.start < interval);
            self.sweep_at = Self::SWEEP_AT.max(self.clients.len() * 2);
        }
        let w = self.clients.entry(key.to_string()).or_insert(Window {
            start: now,
            available: self.max,
        });
        if now - w.start >= self.interval {
            w.start = now;
            w.available = self.max;
        }
        if w.available > 0 {
            w.available -= 1;
            true
        } else {
            false
        }
    }
}

struct RateConfig {
    settings: Settings,
}

/// PocketBase's rate limiting, per node.
struct RateLimiter {
    config: ArcSwap<RateConfig>,
    limiters: Mutex<HashMap<String, Limiter>>,
    clock: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            config: ArcSwap::from_pointee(RateConfig {
                settings: Settings::defaults(),
            }),
            limiters: Mutex::new(HashMap::new()),
            clock: Instant::now(),
        }
    }
}

const GUEST: [&str; 2] = ["", "@guest"];
const AUTHED: [&str; 2] = ["", "@auth"];

impl RateLimiter {
    fn configure(&self, s: &Settings) {
        let old = self.config.load();
        if old.settings.rate_limits != s.rate_limits {
            self.limiters.lock().clear();
        }
        self.config.store(Arc::new(RateConfig {
            settings: s.clone(),
        }));
    }

    async fn check_request(
        &self,
        st: &AppState,
        ip: &str,
        method: &Method,
        path: &str,
        token: Option<String>,
    ) -> Result<(), ApiError> {
        let auth = match token {
            Some(t) => authenticate(&st.store, &st.auth_cache, &t)
                .await
                .unwrap_or(Auth::Guest),
            None => Auth::Guest,
        };
        if let Some((coll, route, tags)) = collection_route(method, path) {
            // An unknown collection is the handler's 404, not a rate limit.
            let Some(c) = st.store.schema().get(coll).cloned() else {
                return Ok(());
            };
            return self.check_collection(ip, &auth, &c, (method, route), tags);
        }
        let labels = [format!("{method} {path}"), path.to_string()];
        self.check(ip, &auth, &labels, None)
    }

    fn check_collection(
        &self,
        ip: &str,
        auth: &Auth,
        c: &Collection,
        (method, route): (&Method, &str),
        tags: &[&str],
    ) -> Result<(), ApiError> {
        let path = format!("/api/collections/{}/{route}", c.name);
        let mut labels: Vec<String> = tags.iter().map(|t| format!("{}:{t}", c.name)).collect();
        labels.extend(tags.iter().map(|t| format!("*:{t}")));
        labels.push(format!("{method} {path}"));
        labels.push(path);
        let id = format!("{}{method} {route}{}", c.id, tags.concat());
        self.check(ip, auth, &labels, Some(id))
    }

    /// Finds the rule for `labels` and counts the request against it; `id`: the limiter of a
    /// collection route (else the rule's own).
    fn check(
        &self,
        ip: &str,
        auth: &Auth,
        labels: &[String],
        id: Option<String>,
    ) -> Result<(), ApiError> {
        let config = self.config.load();
        let limits = &config.settings.rate_limits;
        if !limits.enabled || auth.is_superuser() || ip.is_empty() {
            return Ok(());
        }
        if ip_in_list(&limits.excluded_ips, ip) {
            return Ok(());
        }
        let audiences = if matches!(auth, Auth::Guest) {
            &GUEST
        } else {
            &AUTHED
        };
        let Some(rule) = find_rule(&limits.rules, labels, audiences) else {
            return Ok(());
        };
        let id = format!(
            "{}{}",
            id.unwrap_or_else(|| rule.label.clone()),
            rule.audience
        );
        let now = self.clock.elapsed().as_secs() as i64;
        let allowed = self
            .limiters
            .lock()
            .entry(id)
            .or_insert_with(|| Limiter::new(rule.max_requests, rule.duration))
            .allow(ip, now);
        if allowed {
            Ok(())
        } else {
            tracing::debug!(ip, label = %rule.label, "rate limit rule triggered");
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests.",
            ))
        }
    }
}

/// PocketBase's `FindRateLimitRule`: the first rule whose label equals a search label (in
/// order), or, for the first label, a rule whose label ends in `/` and prefixes it; only rules
/// of the given audiences.
fn find_rule<'a>(
    rules: &'a [RateLimitRule],
    labels: &[String],
    audiences: &[&str],
) -> Option<&'a RateLimitRule> {
    let mut prefix_rules = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        for (j, r) in rules.iter().enumerate() {
            if *label == r.label && audiences.contains(&r.audience.as_str()) {
                return Some(r);
            }
            if i == 0 && r.label.ends_with('/') {
                prefix_rules.push(j);
            }
        }
        let with_slash = format!("{label}/");
        for &j in &prefix_rules {
            let r = &rules[j];
            if with_slash.starts_with(&r.label) && audiences.contains(&r.audience.as_str()) {
                return Some(r);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<RateLimitRule> {
        Settings::defaults().rate_limits.rules
    }

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rules_match_like_pocketbase() {
        let rules = rules();
        let login = labels(&[
            "users:authWithPassword",
            "users:auth",
            "*:authWithPassword",
            "*:auth",
            "POST /api/collections/users/auth-with-password",
            "/api/collections/users/auth-with-password",
        ]);
        assert_eq!(
            find_rule(&rules, &login, &GUEST).map(|r| r.label.as_str()),
            Some("*:auth")
        );
        let list = labels(&[
            "posts:list",
            "*:list",
            "GET /api/collections/posts/records",
            "/api/collections/posts/records",
        ]);
        assert_eq!(
            find_rule(&rules, &list, &GUEST).map(|r| r.label.as_str()),
            Some("/api/"),
            "a prefix rule matches"
        );
        let batch = labels(&["POST /api/batch", "/api/batch"]);
        assert_eq!(
            find_rule(&rules, &batch, &GUEST).map(|r| r.label.as_str()),
            Some("/api/batch")
        );
        assert!(find_rule(&rules, &labels(&["GET /other", "/other"]), &GUEST).is_none());
        let mut only_auth = rules.clone();
        only_auth[0].audience = "@auth".into();
        assert_eq!(
            find_rule(&only_auth, &login, &GUEST).map(|r| r.label.as_str()),
            Some("/api/"),
            "a rule for signed-in clients does not apply to guests"
        );
        let method = vec![RateLimitRule {
            label: "POST /api/collections/".into(),
            ..Default::default()
        }];
        assert!(find_rule(&method, &login[4..], &GUEST).is_some());
        assert!(find_rule(&method, &list[2..], &GUEST).is_none());
    }

    #[test]
    fn a_window_allows_max_requests_then_resets() {
        let mut l = Limiter::new(2, 3);
        assert!(l.allow("a", 10));
        assert!(l.allow("a", 11));
        assert!(!l.allow("a", 12));
        assert!(l.allow("b", 12), "clients are counted apart");
        assert!(l.allow("a", 13), "a new window");
    }

    #[test]
    fn excluded_ips_and_subnets() {
        let list = vec!["10.0.0.0/8".to_string(), "::1".to_string()];
        assert!(ip_in_list(&list, "10.1.2.3"));
        assert!(!ip_in_list(&list, "11.1.2.3"));
        assert!(ip_in_list(&list, "::1"));
        assert!(!ip_in_list(&list, ""));
    }

    #[test]
    fn the_real_ip_comes_from_trusted_headers_only() {
        let mut s = Settings::defaults();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(real_ip(&s, &h, peer), "127.0.0.1");
        s.trusted_proxy.headers = vec!["X-Forwarded-For".into()];
        assert_eq!(real_ip(&s, &h, peer), "2.2.2.2");
        s.trusted_proxy.use_leftmost_ip = true;
        assert_eq!(real_ip(&s, &h, peer), "1.1.1.1");
    }
}
