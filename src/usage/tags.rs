//! Attribution: which tags a request is counted under, and who the client is.
//!
//! Tag sources in priority order (seed 002, "Tagging"): the `X-Proxy-Tag` header, a `model@tag`
//! suffix, the bearer token (`Authorization: Bearer alice`), then `x-api-key` (Anthropic clients);
//! with none of them the store applies the default-tag setting. The `@tag` suffix is always
//! stripped from the model name, whichever source wins. Comma-separated values give several tags,
//! stored as separate normalised values. A value that looks like a real provider key (a known
//! key prefix, or a long mixed-case random token) is never kept in clear: it becomes a short
//! hash-derived label.
//!
//! Owns no state; the trusted-proxy list comes from the configuration.

use std::net::IpAddr;

use poem::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Most tags kept per request (the rest are ignored).
pub const MAX_TAGS: usize = 16;

/// Longest tag kept, characters (longer tags are cut).
pub const MAX_TAG_CHARS: usize = 64;

/// Longest User-Agent kept, characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// Prefixes of real provider keys (OpenAI/OpenRouter/DeepSeek `sk-`, Anthropic `sk-ant-`, Google
/// `AIza`, Groq `gsk_`, xAI `xai-`, Perplexity `pplx-`): a value starting with one is stored only
/// as `key-<8 hex of its SHA-256>`.
const KEY_PREFIXES: [&str; 6] = ["sk-", "sk-ant-", "AIza", "gsk_", "xai-", "pplx-"];

/// Shortest prefix-less value that can look like a random key (Mistral's keys: 32 characters).
const MIN_RANDOM_KEY_CHARS: usize = 24;

/// Split a `model@tag` name into the model and the suffix (`None` without `@` or with an empty
/// suffix, `model@`, whose `@` is still stripped). The split is at the last `@`; an empty model
/// keeps the name as is.
pub fn split_model_suffix(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('@') {
        Some((model, tag)) if !model.trim().is_empty() => {
            (model, Some(tag).filter(|t| !t.trim().is_empty()))
        }
        _ => (name, None),
    }
}

/// Whether `value` (or a word of it) looks like a real provider API key: a known key prefix, or a
/// long random token
/// (at least `MIN_RANDOM_KEY_CHARS` of `[A-Za-z0-9_-]` mixing upper case, lower case and
/// digits, as Mistral's prefix-less keys do; tags people type are rarely like that, and one that
/// is only gets a stable label).
pub fn looks_like_key(value: &str) -> bool {
    // A key among other words ("alice sk-...") is still a key.
    value.split_whitespace().any(word_looks_like_key)
}

fn word_looks_like_key(value: &str) -> bool {
    if KEY_PREFIXES.iter().any(|p| value.starts_with(p)) {
        return true;
    }
    value.len() >= MIN_RANDOM_KEY_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && value.bytes().any(|b| b.is_ascii_uppercase())
        && value.bytes().any(|b| b.is_ascii_lowercase())
        && value.bytes().any(|b| b.is_ascii_digit())
}

/// The label stored instead of a key-looking value: `key-` and the first 8 hex digits of its
/// SHA-256 (stable per key, so usage per key stays visible without the key).
pub fn key_label(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(12);
    out.push_str("key-");
    for b in digest.iter().take(4) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Normalise a comma-separated tag value: split, trim, replace key-looking values by their label,
/// lower-case, cut to [`MAX_TAG_CHARS`], drop empties and duplicates (first kept), at most
/// [`MAX_TAGS`].
pub fn normalise(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in value.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let tag = if looks_like_key(raw) {
            key_label(raw)
        } else {
            raw.chars()
                .filter(|c| !c.is_control())
                .take(MAX_TAG_CHARS)
                .collect::<String>()
                .to_lowercase()
        };
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
        if out.len() == MAX_TAGS {
            break;
        }
    }
    out
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The header-borne tag sources of a request, read when it arrives; the model suffix (in the
/// body) is supplied later by [`TagSources::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSources {
    /// From `X-Proxy-Tag` (normalised; empty when absent).
    header: Vec<String>,
    /// From the bearer token, else `x-api-key` (normalised, keys hashed; empty when absent).
    credentials: Vec<String>,
}

impl TagSources {
    /// Read `X-Proxy-Tag`, `Authorization: Bearer` and `x-api-key`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let bearer = header(headers, "authorization").and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
        TagSources {
            header: header(headers, "x-proxy-tag")
                .map(normalise)
                .unwrap_or_default(),
            credentials: [bearer, header(headers, "x-api-key")]
                .into_iter()
                .flatten()
                .map(normalise)
                .find(|t| !t.is_empty())
                .unwrap_or_default(),
        }
    }

    /// The tags in priority order: header, then `model_suffix`, then credentials. Empty: none
    /// given (the default tag applies later, from the settings).
    pub fn resolve(&self, model_suffix: Option<&str>) -> Vec<String> {
        if !self.header.is_empty() {
            return self.header.clone();
        }
        let suffix = model_suffix.map(normalise).unwrap_or_default();
        if !suffix.is_empty() {
            return suffix;
        }
        self.credentials.clone()
    }
}

/// The tags of a request (see [`TagSources`]): the first source that yields at least one tag, in
/// priority order `X-Proxy-Tag`, model suffix, bearer token, `x-api-key`. (The request log keeps
/// the [`TagSources`] and resolves once the model suffix is known; this is the one-shot form.)
#[cfg(test)]
fn tags(headers: &HeaderMap, model_suffix: Option<&str>) -> Vec<String> {
    TagSources::from_headers(headers).resolve(model_suffix)
}

/// A trusted proxy: one address or a CIDR network (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    net: IpAddr,
    prefix: u8,
}

impl TrustedProxy {
    /// Parse `ip` or `ip/prefix`.
    ///
    /// Errors: not an IP address, or a prefix longer than the address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        };
        Ok(TrustedProxy { net, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its left can be forged
/// by the client). Without trusted proxies `X-Forwarded-For` is ignored.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[TrustedProxy],
) -> Option<IpAddr> {
    let peer = peer.map(canonical_ip)?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    // Entries are appended by each proxy, to the list or as a new header line (HAProxy): read
    // them right to left, starting with the last line.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(value) = value.to_str() else {
            return Some(client);
        };
        for entry in value.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical_ip(ip);
                    if !is_trusted(client) {
                        return Some(client);
                    }
                }
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

/// The User-Agent, cut to [`MAX_USER_AGENT_CHARS`].
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    header(headers, "user-agent").map(|v| v.chars().take(MAX_USER_AGENT_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = v.parse() {
                h.append(*k, v);
            }
        }
        h
    }

    #[test]
    fn precedence_header_suffix_bearer_api_key() {
        let all = headers(&[
            ("x-proxy-tag", "hdr"),
            ("authorization", "Bearer bob"),
            ("x-api-key", "carol"),
        ]);
        assert_eq!(tags(&all, Some("sfx")), ["hdr"]);
        let no_hdr = headers(&[("authorization", "Bearer bob"), ("x-api-key", "carol")]);
        assert_eq!(tags(&no_hdr, Some("sfx")), ["sfx"]);
        assert_eq!(tags(&no_hdr, None), ["bob"]);
        assert_eq!(tags(&headers(&[("x-api-key", "carol")]), None), ["carol"]);
        assert!(tags(&HeaderMap::new(), None).is_empty());
        // An empty higher source falls through.
        assert_eq!(
            tags(&headers(&[("x-proxy-tag", " , ")]), Some("sfx")),
            ["sfx"]
        );
    }

    #[test]
    fn multi_tags_are_normalised() {
        assert_eq!(
            normalise(" Alice, project-X ,,alice, q1-2025 "),
            ["alice", "project-x", "q1-2025"]
        );
        assert_eq!(normalise(&"t,".repeat(40)).len(), 1);
        let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        assert_eq!(normalise(&many.join(",")).len(), MAX_TAGS);
    }

    #[test]
    fn key_looking_values_are_hashed() {
        for key in ["sk-proj-abc123", "sk-ant-api03-xyz", "AIzaSyD-secret"] {
            let t = tags(
                &headers(&[("authorization", &format!("Bearer {key}"))]),
                None,
            );
            assert_eq!(t.len(), 1);
            assert!(t[0].starts_with("key-") && t[0].len() == 12, "{t:?}");
            assert!(!t[0].contains(&key[4..]), "{t:?}");
            assert_eq!(t[0], key_label(key));
        }
        assert_ne!(key_label("sk-a"), key_label("sk-b"));
    }

    #[test]
    fn every_builtin_providers_key_format_is_hashed() {
        // Groq `gsk_`, xAI `xai-`, Perplexity `pplx-`, OpenRouter `sk-or-`, and Mistral's
        // prefix-less 32-character mixed-case keys: a client sending the relay's own provider
        // key as its bearer must not get it stored in clear.
        for key in [
            "gsk_4fQb8ZxYt2LmNpQrStUvWxYz0123456789abcdefGHIJ",
            "xai-AbCdEfGh1234567890IjKlMnOpQrStUvWxYz",
            "pplx-AbCdEf0123456789GhIjKlMnOpQr",
            "sk-or-v1-0123456789abcdef",
            "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW",
            // A key inside a value with spaces is still a key.
            "alice sk-proj-abc123",
        ] {
            assert!(looks_like_key(key), "{key}");
            assert_eq!(normalise(key), [key_label(key)], "{key}");
        }
        // Ordinary tags stay readable.
        for tag in [
            "alice",
            "project-alpha",
            "q1-2025",
            "team-platform-engineering-2025",
            "Alice",
        ] {
            assert!(!looks_like_key(tag), "{tag}");
        }
    }

    #[test]
    fn forwarded_for_lines_are_read_from_the_last_one_back() {
        // HAProxy's `option forwardfor` appends a header line rather than extending the list:
        // the client's own (forgeable) line comes first, the trusted proxy's last.
        let peer: IpAddr = [10, 0, 0, 5].into();
        let trusted = [TrustedProxy {
            net: peer,
            prefix: 32,
        }];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7"),
        ]);
        assert_eq!(
            client_ip(Some(peer), &h, &trusted),
            Some([203, 0, 113, 7].into())
        );
    }

    #[test]
    fn model_suffix_split() {
        assert_eq!(split_model_suffix("m-1@alice,x"), ("m-1", Some("alice,x")));
        assert_eq!(split_model_suffix("m-1"), ("m-1", None));
        assert_eq!(split_model_suffix("m-1@"), ("m-1", None));
        assert_eq!(split_model_suffix("@x"), ("@x", None));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let peer: IpAddr = [10, 0, 0, 5].into();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7")]);
        assert_eq!(client_ip(Some(peer), &h, &[]), Some(peer));
        let trusted = [TrustedProxy::parse("10.0.0.0/8").unwrap_or(TrustedProxy {
            net: peer,
            prefix: 32,
        })];
        assert_eq!(
            client_ip(Some(peer), &h, &trusted),
            Some([203, 0, 113, 7].into())
        );
        let outsider: IpAddr = [198, 51, 100, 1].into();
        assert_eq!(client_ip(Some(outsider), &h, &trusted), Some(outsider));
        assert!(TrustedProxy::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxy::parse("proxy").is_err());
        assert!(
            TrustedProxy::parse("::1").is_ok_and(|t| t.contains("::1".parse().unwrap_or(peer)))
        );
    }
}
