//! Loader for the recorded provider traffic in `tests/fixtures/` (see its PROVENANCE.md).
//!
//! Supported formats, chosen by file name:
//! - `*.httprr`      Go httprr trace (tmc/langchaingo): raw HTTP/1.1 request + raw response.
//! - `*.yaml`/`*.yml` vcrpy cassette, both layouts (`response.body.string` / `parsed_body`,
//!   and the older `response.content` + `status_code`).
//! - `*.body.json`   response body only -> one synthetic `POST /chat/completions` exchange.
//! - `*.chunks.txt`  one SSE `data:` payload per line -> one synthetic SSE exchange.
//!
//! Response bodies are returned as the client would see them after transfer decoding
//! (HTTP chunked framing removed). Headers are kept verbatim, including `Content-Length` and
//! `Transfer-Encoding` which may no longer match the decoded body; the fake upstream drops them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_yaml::Value as Yaml;

/// One recorded HTTP request/response pair.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Upper-case HTTP method, e.g. `POST`.
    pub method: String,
    /// Absolute URL as recorded (`https://api.openai.com/v1/chat/completions`); synthetic
    /// exchanges (`.body.json`, `.chunks.txt`) carry the bare path `/chat/completions`.
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Option<Vec<u8>>,
    pub status: u16,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
}

impl Exchange {
    /// URL path without scheme, host, query or fragment, e.g. `/v1/chat/completions`.
    pub fn path(&self) -> String {
        let rest = match self.url.find("://") {
            Some(i) => {
                let after = &self.url[i + 3..];
                match after.find(['/', '?', '#']) {
                    Some(j) => &after[j..],
                    None => "",
                }
            }
            None => self.url.as_str(),
        };
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let path = &rest[..end];
        if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        }
    }

    /// Query string without the leading `?` (e.g. `alt=sse`), if the URL has one.
    pub fn query(&self) -> Option<String> {
        let q = self.url.split_once('?')?.1;
        let q = q.split('#').next().unwrap_or("");
        Some(q.to_string())
    }

    /// First response header with this name (case-insensitive).
    pub fn response_header(&self, name: &str) -> Option<&str> {
        find_header(&self.response_headers, name)
    }

    /// First request header with this name (case-insensitive).
    pub fn request_header(&self, name: &str) -> Option<&str> {
        find_header(&self.request_headers, name)
    }

    /// True when the response is a Server-Sent-Events stream (`Content-Type: text/event-stream`).
    pub fn is_sse(&self) -> bool {
        self.response_header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/event-stream"))
    }

    /// The response body parsed as JSON. Panics for non-JSON bodies (e.g. SSE).
    pub fn response_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.response_body).unwrap_or_else(|e| {
            panic!(
                "response body of {} {} is not JSON: {e}\n{}",
                self.method,
                self.url,
                String::from_utf8_lossy(&self.response_body)
            )
        })
    }

    /// The request body parsed as JSON; `None` if there is no body or it is not JSON.
    pub fn request_json(&self) -> Option<serde_json::Value> {
        self.request_body
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok())
    }

    /// Payloads of the SSE `data:` lines of the response body, in order (including `[DONE]`).
    /// Works for `\n` and `\r\n` line endings; the single optional space after `data:` is removed.
    pub fn sse_data(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.response_body)
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| {
                d.strip_prefix(' ')
                    .unwrap_or(d)
                    .trim_end_matches('\r')
                    .to_string()
            })
            .collect()
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Absolute path of `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// Every fixture file under `tests/fixtures` (recursively), as paths relative to it, sorted.
/// Only files with a supported extension are listed (PROVENANCE.md etc. are skipped).
pub fn all_fixture_files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list fixture dir {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("fixture dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if is_fixture_name(&path.to_string_lossy()) {
                let rel = path.strip_prefix(base).expect("path under fixtures dir");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let base = fixtures_dir();
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

fn is_fixture_name(name: &str) -> bool {
    [".httprr", ".yaml", ".yml", ".body.json", ".chunks.txt"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Load the exchanges recorded in `tests/fixtures/<rel_path>`, e.g. `"openai/chat_basic.httprr"`.
pub fn load(rel_path: &str) -> Vec<Exchange> {
    let full = fixtures_dir().join(rel_path);
    let bytes = std::fs::read(&full)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", full.display()));
    let file_name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exchanges = if file_name.ends_with(".httprr") {
        parse_httprr(&bytes, rel_path)
    } else if file_name.ends_with(".body.json") {
        vec![body_json_exchange(bytes, &file_name)]
    } else if file_name.ends_with(".chunks.txt") {
        vec![chunks_exchange(&bytes, rel_path)]
    } else if file_name.ends_with(".yaml") || file_name.ends_with(".yml") {
        parse_vcr(&bytes, rel_path)
    } else {
        panic!("unknown fixture format: {rel_path}");
    };
    for ex in &exchanges {
        if let Some(enc) = ex.response_header("content-encoding") {
            assert!(
                enc.eq_ignore_ascii_case("identity"),
                "{rel_path}: response has Content-Encoding {enc}; compressed fixtures are not supported"
            );
        }
    }
    exchanges
}

// ---------------------------------------------------------------------------------------------
// Synthetic exchanges (.body.json / .chunks.txt)
// ---------------------------------------------------------------------------------------------

/// Status from a file name like `error_400_unsupported_parameter.body.json`, else 200.
fn status_from_name(file_name: &str) -> u16 {
    file_name
        .strip_prefix("error_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or(200)
}

fn body_json_exchange(body: Vec<u8>, file_name: &str) -> Exchange {
    Exchange {
        method: "POST".to_string(),
        url: "/chat/completions".to_string(),
        request_headers: Vec::new(),
        request_body: None,
        status: status_from_name(file_name),
        response_headers: vec![("content-type".to_string(), "application/json".to_string())],
        response_body: body,
    }
}

fn chunks_exchange(bytes: &[u8], rel_path: &str) -> Exchange {
    let text = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{rel_path}: chunks file is not UTF-8: {e}"));
    let mut body = String::new();
    let mut saw_done = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let payload = line
            .strip_prefix("data:")
            .map(|p| p.strip_prefix(' ').unwrap_or(p))
            .unwrap_or(line);
        if payload == "[DONE]" {
            saw_done = true;
        }
        body.push_str("data: ");
        body.push_str(payload);
        body.push_str("\n\n");
    }
    if !saw_done {
        body.push_str("data: [DONE]\n\n");
    }
    Exchange {
        method: "POST".to_string(),
        url: "/chat/completions".to_string(),
        request_headers: Vec::new(),
        request_body: None,
        status: 200,
        response_headers: vec![("content-type".to_string(), "text/event-stream".to_string())],
        response_body: body.into_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// Go httprr traces
// ---------------------------------------------------------------------------------------------

fn parse_httprr(bytes: &[u8], rel_path: &str) -> Vec<Exchange> {
    const MAGIC: &[u8] = b"httprr trace v1\n";
    assert!(
        bytes.starts_with(MAGIC),
        "{rel_path}: missing `httprr trace v1` header line"
    );
    let mut pos = MAGIC.len();
    let mut out = Vec::new();
    while pos < bytes.len() {
        let nl = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("{rel_path}: truncated length line at byte {pos}"));
        let len_line = std::str::from_utf8(&bytes[pos..pos + nl])
            .unwrap_or_else(|e| panic!("{rel_path}: bad length line: {e}"));
        let mut parts = len_line.split_whitespace();
        let mut next_len = || -> usize {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{rel_path}: bad length line {len_line:?}"))
        };
        let (req_len, resp_len) = (next_len(), next_len());
        pos += nl + 1;
        assert!(
            pos + req_len + resp_len <= bytes.len(),
            "{rel_path}: exchange at byte {pos} claims {req_len}+{resp_len} bytes, file too short"
        );
        let req = &bytes[pos..pos + req_len];
        pos += req_len;
        let resp = &bytes[pos..pos + resp_len];
        pos += resp_len;

        let (req_start, request_headers, req_body) = split_http_message(req, rel_path);
        let mut start = req_start.split_whitespace();
        let method = start.next().unwrap_or_default().to_ascii_uppercase();
        let target = start.next().unwrap_or_default().to_string();
        let url = if target.starts_with('/') {
            let host = find_header(&request_headers, "host").unwrap_or("localhost");
            format!("http://{host}{target}")
        } else {
            target
        };
        let req_body = decode_body(&request_headers, req_body, rel_path);

        let (resp_start, response_headers, resp_body) = split_http_message(resp, rel_path);
        let status = resp_start
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("{rel_path}: bad status line {resp_start:?}"));
        let response_body = decode_body(&response_headers, resp_body, rel_path);

        out.push(Exchange {
            method,
            url,
            request_headers,
            request_body: (!req_body.is_empty()).then_some(req_body),
            status,
            response_headers,
            response_body,
        });
    }
    out
}

type Headers = Vec<(String, String)>;

/// Split a raw HTTP message into start line, headers and (still transfer-encoded) body.
/// Header lines may end in CRLF or bare LF (httprr rewrites User-Agent with LF only).
fn split_http_message<'a>(msg: &'a [u8], rel_path: &str) -> (String, Headers, &'a [u8]) {
    let mut pos = 0;
    let next_line = |pos: &mut usize| -> String {
        let nl = msg[*pos..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("{rel_path}: HTTP header block not terminated"));
        let line = String::from_utf8_lossy(&msg[*pos..*pos + nl])
            .trim_end_matches('\r')
            .to_string();
        *pos += nl + 1;
        line
    };
    let start = next_line(&mut pos);
    let mut headers = Vec::new();
    loop {
        let line = next_line(&mut pos);
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{rel_path}: malformed header line {line:?}"));
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    (start, headers, &msg[pos..])
}

fn decode_body(headers: &Headers, body: &[u8], rel_path: &str) -> Vec<u8> {
    let chunked = find_header(headers, "transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        decode_chunked(body, rel_path)
    } else {
        body.to_vec()
    }
}

/// Decode HTTP/1.1 chunked transfer-encoding (`<hex>[;ext]\r\n<data>\r\n ... 0\r\n\r\n`).
fn decode_chunked(mut body: &[u8], rel_path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = body
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_else(|| panic!("{rel_path}: truncated chunk size line"));
        let size_line = String::from_utf8_lossy(&body[..nl]);
        let size_hex = size_line.trim_end_matches('\r');
        let size_hex = size_hex.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .unwrap_or_else(|e| panic!("{rel_path}: bad chunk size {size_hex:?}: {e}"));
        body = &body[nl + 1..];
        if size == 0 {
            // Trailers (if any) follow; they are ignored.
            break;
        }
        assert!(
            body.len() >= size,
            "{rel_path}: chunk of {size} bytes truncated"
        );
        out.extend_from_slice(&body[..size]);
        body = &body[size..];
        body = body
            .strip_prefix(b"\r\n")
            .or_else(|| body.strip_prefix(b"\n"))
            .unwrap_or(body);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// vcrpy YAML cassettes
// ---------------------------------------------------------------------------------------------

fn parse_vcr(bytes: &[u8], rel_path: &str) -> Vec<Exchange> {
    let text = std::str::from_utf8(bytes)
        .unwrap_or_else(|e| panic!("{rel_path}: cassette is not UTF-8: {e}"));
    // yaml_serde resolves the core-schema tag `!!binary` on quoted/block scalars to a plain
    // string, losing the information that it is base64. Turn it into the local tag `!binary`,
    // which yaml_serde keeps as `Value::Tagged`, so `yaml_bytes` can decode it.
    let text = text.replace("!!binary", "!binary");
    let doc: Yaml =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel_path}: invalid YAML: {e}"));
    let interactions = doc
        .get("interactions")
        .and_then(Yaml::as_sequence)
        .unwrap_or_else(|| panic!("{rel_path}: no `interactions` list"));
    interactions
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let ctx = format!("{rel_path} interaction #{i}");
            let req = it
                .get("request")
                .unwrap_or_else(|| panic!("{ctx}: no request"));
            let resp = it
                .get("response")
                .unwrap_or_else(|| panic!("{ctx}: no response"));

            let method = req
                .get("method")
                .and_then(Yaml::as_str)
                .unwrap_or("GET")
                .to_ascii_uppercase();
            let url = req
                .get("uri")
                .or_else(|| req.get("url"))
                .and_then(Yaml::as_str)
                .unwrap_or_else(|| panic!("{ctx}: request has no uri"))
                .to_string();
            let request_headers = yaml_headers(req.get("headers"));
            let request_body = yaml_body(req, &ctx).filter(|b| !b.is_empty());

            let status = resp
                .get("status")
                .and_then(|s| s.get("code").or(Some(s)))
                .and_then(yaml_u16)
                .or_else(|| resp.get("status_code").and_then(yaml_u16))
                .unwrap_or_else(|| panic!("{ctx}: response has no status code"));
            let response_headers = yaml_headers(resp.get("headers"));
            let response_body = yaml_body(resp, &ctx).unwrap_or_default();

            Exchange {
                method,
                url,
                request_headers,
                request_body,
                status,
                response_headers,
                response_body,
            }
        })
        .collect()
}

fn yaml_u16(v: &Yaml) -> Option<u16> {
    match v {
        Yaml::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Yaml::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Body of a vcrpy request/response map. Handles, in order of precedence:
/// `parsed_body` (pydantic-ai: decoded JSON stored as YAML, re-encoded here),
/// `body: {string: ...}` / `body: {base64_string: ...}`, `body: <string>`, `body: !!binary`,
/// and the older httpx layout `content: <string>`.
fn yaml_body(msg: &Yaml, ctx: &str) -> Option<Vec<u8>> {
    if let Some(parsed) = msg.get("parsed_body") {
        let json = yaml_to_json(parsed, ctx);
        return Some(serde_json::to_vec(&json).expect("serialising a JSON value cannot fail"));
    }
    let body = msg.get("body").or_else(|| msg.get("content"))?;
    match body {
        Yaml::Mapping(_) => {
            if let Some(s) = body.get("string") {
                yaml_bytes(s, ctx)
            } else if let Some(b64) = body.get("base64_string").and_then(Yaml::as_str) {
                Some(decode_base64(b64, ctx))
            } else {
                panic!("{ctx}: unrecognised body mapping {body:?}")
            }
        }
        other => yaml_bytes(other, ctx),
    }
}

fn yaml_bytes(v: &Yaml, ctx: &str) -> Option<Vec<u8>> {
    match v {
        Yaml::Null => None,
        Yaml::String(s) => Some(s.clone().into_bytes()),
        Yaml::Tagged(t) if t.tag == "binary" || t.tag == "tag:yaml.org,2002:binary" => {
            let s = t
                .value
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: !!binary value is not a string"));
            Some(decode_base64(s, ctx))
        }
        Yaml::Sequence(items) => {
            // Some recorders store a body as a list of byte values.
            let bytes = items
                .iter()
                .map(|b| {
                    b.as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .unwrap_or_else(|| panic!("{ctx}: body sequence item is not a byte"))
                })
                .collect();
            Some(bytes)
        }
        other => panic!("{ctx}: unsupported body value {other:?}"),
    }
}

fn decode_base64(s: &str, ctx: &str) -> Vec<u8> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap_or_else(|e| panic!("{ctx}: bad base64 body: {e}"))
}

/// vcrpy headers: a map of name -> list of values (or a single value). One entry per value.
fn yaml_headers(v: Option<&Yaml>) -> Headers {
    let Some(Yaml::Mapping(map)) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, vals) in map {
        let name = yaml_scalar_string(k);
        match vals {
            Yaml::Sequence(items) => {
                for item in items {
                    out.push((name.clone(), yaml_scalar_string(item)));
                }
            }
            other => out.push((name.clone(), yaml_scalar_string(other))),
        }
    }
    out
}

fn yaml_scalar_string(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Null => String::new(),
        Yaml::Tagged(t) => yaml_scalar_string(&t.value),
        other => panic!("expected a scalar header value, got {other:?}"),
    }
}

fn yaml_to_json(v: &Yaml, ctx: &str) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Yaml::Null => J::Null,
        Yaml::Bool(b) => J::Bool(*b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                let f = n
                    .as_f64()
                    .unwrap_or_else(|| panic!("{ctx}: bad number {n}"));
                serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .unwrap_or_else(|| panic!("{ctx}: non-finite number {f} in parsed_body"))
            }
        }
        Yaml::String(s) => J::String(s.clone()),
        Yaml::Sequence(items) => J::Array(items.iter().map(|i| yaml_to_json(i, ctx)).collect()),
        Yaml::Mapping(map) => J::Object(
            map.iter()
                .map(|(k, v)| (yaml_scalar_string(k), yaml_to_json(v, ctx)))
                .collect(),
        ),
        Yaml::Tagged(t) => yaml_to_json(&t.value, ctx),
    }
}
