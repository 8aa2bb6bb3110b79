//! Admin authentication: the password (argon2id, stored only as a PHC hash), sessions (an
//! HttpOnly, SameSite=Strict cookie holding a random 256-bit token, with expiry), a CSRF token per
//! session required on every state-changing request, and the failed-login rate limit per client
//! IP. Routes: `POST /api/login`, `POST /api/logout`, `GET /api/session`, `POST /api/password`
//! (admin/API.md, "Auth").
//!
//! Sessions survive a restart: they are kept in the settings table under [`SESSIONS_KEY`] (the
//! SHA-256 of each cookie token, never the token; its CSRF token and expiry), rewritten on every
//! login, logout and password change. A password that changed while the server was down
//! (`ADMIN_PASSWORD`) ends them all. The password itself is stored under [`PASSWORD_HASH_KEY`].

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use poem::http::{Method, StatusCode};
use poem::web::Data;
use poem::{Body, Endpoint, IntoResponse, Request, Response, handler};
use serde::{Deserialize, Serialize};

use super::{AdminError, AdminState};
use crate::store::OverrideStore;

/// Settings key of the password's argon2id PHC hash (never exposed through `/api/settings`).
pub const PASSWORD_HASH_KEY: &str = "admin.password_hash";
/// Settings key of the live sessions (JSON: `[{"key": hex SHA-256 of the cookie token,
/// "csrf_token", "expires_unix": s}]`; never exposed through `/api/settings`).
pub const SESSIONS_KEY: &str = "admin.sessions";
/// Session cookie name.
pub const COOKIE: &str = "llm_relay_session";
/// Request header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest accepted password, characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Failed logins per client IP within [`FAILURE_WINDOW`] after which logins are refused (429)
/// until the oldest failure leaves the window.
pub const MAX_FAILURES: usize = 5;
/// The failed-login window: 60 s.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Length of a generated password: 24 characters of [A-Za-z0-9] (~143 bits).
const GENERATED_CHARS: usize = 24;
/// Most client IPs whose failures are remembered; beyond this the oldest entries are dropped.
const MAX_TRACKED_IPS: usize = 10_000;

/// A live session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// Token to send in `X-CSRF-Token` on state-changing requests (hex, 256 bits).
    pub csrf_token: String,
    /// When the session ends, RFC 3339 UTC.
    pub expires_at: String,
}

struct Session {
    info: SessionInfo,
    expires: Instant,
    /// `expires` as Unix seconds (what is stored).
    expires_unix: i64,
}

/// A session as stored under [`SESSIONS_KEY`].
#[derive(Serialize, Deserialize)]
struct StoredSession {
    /// Hex SHA-256 of the cookie token.
    key: String,
    csrf_token: String,
    expires_unix: i64,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `bytes` as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes of a 64-digit hex string.
fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The stored sessions that have not expired (unreadable entries are skipped: at worst someone
/// logs in again).
fn load_sessions(store: &dyn OverrideStore) -> HashMap<[u8; 32], Session> {
    let Ok(Some(text)) = store.get_setting(SESSIONS_KEY) else {
        return HashMap::new();
    };
    let stored: Vec<StoredSession> = serde_json::from_str(&text).unwrap_or_default();
    let (now, now_unix) = (Instant::now(), unix_now());
    stored
        .into_iter()
        .filter(|s| s.expires_unix > now_unix)
        .filter_map(|s| {
            let key = unhex(&s.key)?;
            let left = Duration::from_secs(u64::try_from(s.expires_unix - now_unix).ok()?);
            let expires_at = time::OffsetDateTime::from_unix_timestamp(s.expires_unix)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()?;
            Some((
                key,
                Session {
                    info: SessionInfo {
                        csrf_token: s.csrf_token,
                        expires_at,
                    },
                    expires: now + left,
                    expires_unix: s.expires_unix,
                },
            ))
        })
        .collect()
}

/// The password, sessions and login rate limit.
pub struct Auth {
    store: Arc<dyn OverrideStore>,
    /// The argon2id PHC hash in effect.
    hash: RwLock<String>,
    /// Sessions by the SHA-256 of their cookie token (a memory dump shows no usable cookie).
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    ttl: Duration,
}

/// Random bytes from the operating system, as lower-case hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex(&buf)
}

/// A random password of [`GENERATED_CHARS`] alphanumeric characters (rejection sampling: no bias).
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(GENERATED_CHARS);
    let mut buf = [0u8; 64];
    while out.len() < GENERATED_CHARS {
        OsRng.fill_bytes(&mut buf);
        for b in buf {
            // 248 = 4 * 62: bytes above it would favour the first letters.
            if (b as usize) < 4 * ALPHABET.len() && out.len() < GENERATED_CHARS {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// The argon2id PHC hash of `password` (argon2 crate defaults: m = 19 MiB, t = 2, p = 1, the
/// OWASP recommendation).
///
/// Errors: the hasher failed (it does not for these parameters).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the admin password: {e}"))
}

fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn sha256(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison (the CSRF token must not leak through timing).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn rfc3339_in(d: Duration) -> String {
    let t = time::OffsetDateTime::now_utc() + d;
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Auth {
    /// Set up the password: `env_password` (`ADMIN_PASSWORD`) when given (its hash is stored
    /// unless the stored one already matches it); else the stored hash; else a random password,
    /// printed once in the log as a banner, and its hash stored.
    ///
    /// Errors: the settings table cannot be read or written.
    pub fn init(
        store: Arc<dyn OverrideStore>,
        env_password: Option<&str>,
        ttl: Duration,
    ) -> Result<Auth, String> {
        let stored = store
            .get_setting(PASSWORD_HASH_KEY)
            .map_err(|e| e.to_string())?;
        // A password set now (new, or changed through ADMIN_PASSWORD) ends the stored sessions.
        let mut keep_sessions = true;
        let hash = match (env_password, stored) {
            (Some(p), Some(h)) if verify(&h, p) => h,
            (Some(p), _) => {
                keep_sessions = false;
                let h = hash_password(p)?;
                store
                    .set_setting(PASSWORD_HASH_KEY, &h)
                    .map_err(|e| e.to_string())?;
                h
            }
            (None, Some(h)) => h,
            (None, None) => {
                keep_sessions = false;
                let p = generate_password();
                let h = hash_password(&p)?;
                store
                    .set_setting(PASSWORD_HASH_KEY, &h)
                    .map_err(|e| e.to_string())?;
                let rule = "=".repeat(60);
                tracing::warn!(
                    "admin password\n{rule}\nADMIN PASSWORD NOT SET - Generated random password:\n  {p}\n{rule}\n\
                     (shown once: it is stored only as a hash; change it in the admin UI's Settings or set ADMIN_PASSWORD)"
                );
                h
            }
        };
        let sessions = if keep_sessions {
            load_sessions(store.as_ref())
        } else {
            HashMap::new()
        };
        let auth = Auth {
            store,
            hash: RwLock::new(hash),
            sessions: Mutex::new(sessions),
            failures: Mutex::new(HashMap::new()),
            ttl,
        };
        if !keep_sessions {
            auth.save_sessions(&auth.sessions.lock().unwrap_or_else(PoisonError::into_inner));
        }
        Ok(auth)
    }

    /// Store `sessions` under [`SESSIONS_KEY`] (called with the sessions lock held, so writes
    /// happen in the order of the changes). A failed write is logged: the sessions stay valid in
    /// memory, only a restart would end them.
    fn save_sessions(&self, sessions: &HashMap<[u8; 32], Session>) {
        let now_unix = unix_now();
        let stored: Vec<StoredSession> = sessions
            .iter()
            .filter(|(_, s)| s.expires_unix > now_unix)
            .map(|(k, s)| StoredSession {
                key: hex(k),
                csrf_token: s.info.csrf_token.clone(),
                expires_unix: s.expires_unix,
            })
            .collect();
        let text = serde_json::to_string(&stored).unwrap_or_else(|_| "[]".into());
        if let Err(e) = self.store.set_setting(SESSIONS_KEY, &text) {
            tracing::warn!(error = %e, "admin sessions not stored: a restart will end them");
        }
    }

    /// Whether `password` is the admin password (argon2 verification: blocking, ~tens of ms).
    pub fn check_password(&self, password: &str) -> bool {
        let hash = self
            .hash
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        verify(&hash, password)
    }

    /// Make `password` the admin password (hash stored, then in effect). Blocking.
    ///
    /// Errors: the hash cannot be stored (the old password stays in effect).
    pub fn set_password(&self, password: &str) -> Result<(), AdminError> {
        let h = hash_password(password).map_err(AdminError::Internal)?;
        self.store.set_setting(PASSWORD_HASH_KEY, &h)?;
        *self.hash.write().unwrap_or_else(PoisonError::into_inner) = h;
        Ok(())
    }

    /// Start a session: its cookie token and what the client sees of it.
    pub fn create_session(&self) -> (String, SessionInfo) {
        let token = random_hex(32);
        let info = SessionInfo {
            csrf_token: random_hex(32),
            expires_at: rfc3339_in(self.ttl),
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            sha256(&token),
            Session {
                info: info.clone(),
                expires: now + self.ttl,
                expires_unix: unix_now().saturating_add(self.ttl.as_secs() as i64),
            },
        );
        self.save_sessions(&sessions);
        (token, info)
    }

    /// The live session of cookie `token` (an expired one is removed and not returned).
    pub fn session(&self, token: &str) -> Option<SessionInfo> {
        let key = sha256(token);
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.info.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// End the session of `token`.
    pub fn end_session(&self, token: &str) {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if sessions.remove(&sha256(token)).is_some() {
            self.save_sessions(&sessions);
        }
    }

    /// End every session but `keep`'s.
    pub fn end_other_sessions(&self, keep: &str) {
        let key = sha256(keep);
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|k, _| *k == key);
        self.save_sessions(&sessions);
    }

    /// Refuse while `ip` has [`MAX_FAILURES`] failures within [`FAILURE_WINDOW`].
    ///
    /// Errors: `RateLimited` with the seconds until the oldest failure leaves the window.
    pub fn check_rate(&self, ip: IpAddr) -> Result<(), AdminError> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        Self::check_locked(&mut failures, ip)
    }

    fn check_locked(
        failures: &mut HashMap<IpAddr, VecDeque<Instant>>,
        ip: IpAddr,
    ) -> Result<(), AdminError> {
        let now = Instant::now();
        let Some(list) = failures.get_mut(&ip) else {
            return Ok(());
        };
        while list
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
        {
            list.pop_front();
        }
        if list.len() < MAX_FAILURES {
            if list.is_empty() {
                failures.remove(&ip);
            }
            return Ok(());
        }
        let oldest = list.front().copied().unwrap_or(now);
        let wait = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
        Err(AdminError::RateLimited {
            retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        })
    }

    /// Start a password check from `ip`: refused like [`Auth::check_rate`], else counted as a
    /// failure at once (under the same lock), so parallel guesses cannot all pass the check
    /// before any of them is counted. Call [`Auth::attempt_succeeded`] when the password was
    /// right.
    ///
    /// Errors: `RateLimited`, as [`Auth::check_rate`].
    pub fn begin_attempt(&self, ip: IpAddr) -> Result<(), AdminError> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        Self::check_locked(&mut failures, ip)?;
        Self::push_failure(&mut failures, ip);
        Ok(())
    }

    /// Take back the failure [`Auth::begin_attempt`] counted for `ip` (the password was right).
    pub fn attempt_succeeded(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = failures.get_mut(&ip) {
            list.pop_back();
            if list.is_empty() {
                failures.remove(&ip);
            }
        }
    }

    /// Count a failed password check from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        Self::push_failure(&mut failures, ip);
    }

    fn push_failure(failures: &mut HashMap<IpAddr, VecDeque<Instant>>, ip: IpAddr) {
        if failures.len() >= MAX_TRACKED_IPS && !failures.contains_key(&ip) {
            let now = Instant::now();
            failures.retain(|_, l| {
                l.back()
                    .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
            });
            if failures.len() >= MAX_TRACKED_IPS {
                failures.clear();
            }
        }
        let list = failures.entry(ip).or_default();
        list.push_back(Instant::now());
        while list.len() > MAX_FAILURES {
            list.pop_front();
        }
    }
}

/// The session cookie's token in `req`, if any.
pub fn session_token(req: &Request) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The client the rate limit counts: the TCP peer, or the forwarded client behind a trusted
/// proxy (unspecified when unknown); an IPv6 address stands for its /64, the smallest block
/// one client is usually given (RFC 6177), or one host could try once per address.
fn client_ip(state: &AdminState, req: &Request) -> IpAddr {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    match crate::usage::tags::client_ip(peer, req.headers(), &state.trusted_proxies) {
        Some(IpAddr::V6(v6)) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !((1u128 << 64) - 1),
        )),
        Some(ip) => ip,
        None => IpAddr::from([0, 0, 0, 0]),
    }
}

/// The session the guard found, handed to the handlers behind it.
#[derive(Clone)]
struct SessionToken(String);

/// The auth layer over `/api/*`: every route but `POST /api/login` needs a live session (401),
/// and every state-changing method also the session's CSRF token in `X-CSRF-Token` (403).
///
/// Errors: the handler's own errors, passed through.
pub async fn guard<E: Endpoint>(ep: Arc<E>, mut req: Request) -> poem::Result<Response> {
    let path = req.original_uri().path();
    if path == "/api/login" {
        return ep.call(req).await.map(IntoResponse::into_response);
    }
    let Some(state) = req.data::<AdminState>().cloned() else {
        return Ok(AdminError::Internal("admin state missing".into()).into_response());
    };
    let token = session_token(&req);
    let Some(info) = token.as_deref().and_then(|t| state.auth.session(t)) else {
        return Ok(
            AdminError::Unauthorized("log in first (no live session)".into()).into_response(),
        );
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if sent.is_empty() {
            return Ok(AdminError::Forbidden("missing X-CSRF-Token header".into()).into_response());
        }
        if !same(sent, &info.csrf_token) {
            return Ok(AdminError::Forbidden("wrong X-CSRF-Token".into()).into_response());
        }
    }
    if let Some(t) = token {
        req.extensions_mut().insert(SessionToken(t));
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Whether the client reached us over HTTPS through a trusted proxy (`X-Forwarded-Proto: https`
/// from a peer in `TRUSTED_PROXIES`): then the cookie is also `Secure`. Without a TLS proxy the
/// admin server speaks plain HTTP, where a `Secure` cookie would never be sent back.
fn behind_https_proxy(state: &AdminState, req: &Request) -> bool {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    peer.is_some_and(|ip| state.trusted_proxies.iter().any(|t| t.contains(ip)))
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn set_cookie(resp: &mut Response, value: &str, max_age_s: u64, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}{secure}");
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().append(poem::http::header::SET_COOKIE, v);
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(serde_json::to_string(body).unwrap_or_default())
}

/// `POST /api/login` body.
#[derive(Deserialize)]
pub struct LoginBody {
    /// The admin password.
    password: String,
}

/// Largest body of the auth routes, bytes. `POST /api/login` is open without a session, so its
/// body is read only up to this bound (also when chunked, without `Content-Length`).
pub const MAX_AUTH_BODY_BYTES: usize = 64 * 1024;

/// Read a JSON body of at most [`MAX_AUTH_BODY_BYTES`].
///
/// Errors: 413 beyond the bound, 400 when it is not the expected JSON.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, AdminError> {
    use crate::frontend::{BodyError, read_body_limited};
    let bytes = read_body_limited(body, MAX_AUTH_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => AdminError::PayloadTooLarge(format!(
                "request body larger than {MAX_AUTH_BODY_BYTES} bytes"
            )),
            BodyError::Read(e) => {
                AdminError::BadRequest(format!("cannot read the request body: {e}"))
            }
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Run the (blocking, CPU-bound) password check off the async workers.
async fn password_matches(state: &AdminState, password: String) -> Result<bool, AdminError> {
    let auth = Arc::clone(&state.auth);
    tokio::task::spawn_blocking(move || auth.check_password(&password))
        .await
        .map_err(|e| AdminError::Internal(format!("password check failed: {e}")))
}

/// `POST /api/login` `{"password"}` → 200 `{"csrf_token", "expires_at"}` + session cookie;
/// 401 wrong password; 429 while rate-limited (checked first, also for the right password).
#[handler]
pub async fn login(
    state: Data<&AdminState>,
    req: &Request,
    body: Body,
) -> Result<Response, AdminError> {
    let ip = client_ip(&state, req);
    state.auth.check_rate(ip)?;
    let b: LoginBody = json_body(body).await?;
    // Counted as a failure before the (slow) check, taken back when the password is right.
    state.auth.begin_attempt(ip)?;
    if !password_matches(&state, b.password).await? {
        tracing::warn!(client = %ip, "admin login failed: wrong password");
        return Err(AdminError::Unauthorized("wrong password".into()));
    }
    state.auth.attempt_succeeded(ip);
    let (token, info) = state.auth.create_session();
    let mut resp = json_response(StatusCode::OK, &info);
    set_cookie(
        &mut resp,
        &token,
        state.auth.ttl.as_secs(),
        behind_https_proxy(&state, req),
    );
    tracing::info!(client = %ip, "admin login");
    Ok(resp)
}

/// `POST /api/logout` → 204, session ended, cookie cleared.
#[handler]
pub async fn logout(state: Data<&AdminState>, req: &Request) -> Response {
    if let Some(SessionToken(t)) = req.extensions().get::<SessionToken>() {
        state.auth.end_session(t);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(&mut resp, "", 0, behind_https_proxy(&state, req));
    resp
}

/// `GET /api/session` → 200 `{"csrf_token", "expires_at"}` (the guard answered 401 already
/// when there is no live session).
#[handler]
pub async fn session(state: Data<&AdminState>, req: &Request) -> Result<Response, AdminError> {
    req.extensions()
        .get::<SessionToken>()
        .and_then(|SessionToken(t)| state.auth.session(t))
        .map(|info| json_response(StatusCode::OK, &info))
        .ok_or_else(|| AdminError::Unauthorized("log in first (no live session)".into()))
}

/// `POST /api/password` body.
#[derive(Deserialize)]
pub struct PasswordBody {
    /// The password in effect.
    current: String,
    /// The new one, at least [`MIN_PASSWORD_CHARS`] characters.
    new: String,
}

/// `POST /api/password` `{"current", "new"}` → 204; every other session ends. 400 new too
/// short, 403 wrong current (counted as a failed login), 429 while rate-limited.
#[handler]
pub async fn change_password(
    state: Data<&AdminState>,
    req: &Request,
    body: Body,
) -> Result<Response, AdminError> {
    let ip = client_ip(&state, req);
    state.auth.check_rate(ip)?;
    let b: PasswordBody = json_body(body).await?;
    if b.new.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AdminError::BadRequest(format!(
            "the new password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    state.auth.begin_attempt(ip)?;
    if !password_matches(&state, b.current).await? {
        return Err(AdminError::Forbidden(
            "the current password is wrong".into(),
        ));
    }
    state.auth.attempt_succeeded(ip);
    let auth = Arc::clone(&state.auth);
    let new = b.new;
    tokio::task::spawn_blocking(move || auth.set_password(&new))
        .await
        .map_err(|e| AdminError::Internal(format!("password change failed: {e}")))??;
    if let Some(SessionToken(t)) = req.extensions().get::<SessionToken>() {
        state.auth.end_other_sessions(t);
    }
    tracing::info!(client = %ip, "admin password changed; other sessions ended");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_differ() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), GENERATED_CHARS);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let req = Request::builder()
            .header("cookie", "theme=dark; llm_relay_session=abc123 ; other=1")
            .finish();
        assert_eq!(session_token(&req).as_deref(), Some("abc123"));
        let req = Request::builder()
            .header("cookie", "xllm_relay_session=nope; llm_relay_session=")
            .finish();
        assert_eq!(
            session_token(&req),
            None,
            "a prefix is another cookie; empty is none"
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abcd", "abce"));
        assert!(!same("abcd", "abc"));
        assert!(!same("", "a"));
    }

    #[test]
    fn the_hash_verifies_only_its_password() {
        let h = hash_password("right password").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(&h, "right password"));
        assert!(!verify(&h, "wrong password"));
        assert!(!verify("not a hash", "right password"));
    }
}
