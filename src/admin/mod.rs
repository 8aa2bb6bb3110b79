//! The admin server (`ADMIN_PORT`, default 8080): the JSON admin API of `admin/API.md` behind a
//! password login, and the embedded web UI.
//!
//! Owns the admin listener, its route table and state, the auth layer ([`auth`]: password,
//! sessions, CSRF, login rate limit), the usage endpoints ([`usage`]), the static UI and the
//! OpenAPI document ([`ui`]). The catalog/settings/pricing endpoints belong to the overrides
//! layer and are nested here under `/api`, behind the same auth. Owns no request-path code: the
//! API server never calls into this module.

pub mod auth;
pub mod error;
pub mod ui;
pub mod usage;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use poem::error::{MethodNotAllowedError, NotFoundError};
use poem::{Endpoint, EndpointExt, IntoResponse, Route};
use tokio::net::TcpListener;

use crate::store::{OverrideStore, UsageQuery};
use crate::usage::tags::TrustedProxy;
pub use error::AdminError;

/// Default admin port.
pub const DEFAULT_PORT: u16 = 8080;

/// How long a session lives after login: 12 h (admin/API.md).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Admin server configuration from the environment.
#[derive(Clone)]
pub struct AdminConfig {
    /// Whether the admin server runs (`ADMIN_ENABLED`, default true).
    pub enabled: bool,
    /// Where it listens: `HOST` (as the API server) and `ADMIN_PORT` (default 8080).
    pub listen: SocketAddr,
    /// `ADMIN_PASSWORD` (or `ADMIN_PASSWORD_FILE`); wins over a stored password when set.
    pub password: Option<String>,
    /// Session lifetime ([`SESSION_TTL`]).
    pub session_ttl: Duration,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("AdminConfig")
            .field("enabled", &self.enabled)
            .field("listen", &self.listen)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl AdminConfig {
    /// Read `ADMIN_ENABLED`, `HOST`, `ADMIN_PORT`, `ADMIN_PASSWORD` (`_FILE`).
    ///
    /// Errors: a set but unusable variable, named with what is expected.
    pub fn from_env() -> Result<AdminConfig, String> {
        use crate::config::{env_bool, env_parse};
        let host: IpAddr = env_parse("HOST", "an IP address such as 0.0.0.0 or 127.0.0.1")?
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let port: u16 = env_parse("ADMIN_PORT", "a port number 0-65535")?.unwrap_or(DEFAULT_PORT);
        let password = crate::config::env_var("ADMIN_PASSWORD")?;
        if let Some(p) = &password
            && p.chars().count() < auth::MIN_PASSWORD_CHARS
        {
            return Err(format!(
                "ADMIN_PASSWORD is too short: at least {} characters",
                auth::MIN_PASSWORD_CHARS
            ));
        }
        Ok(AdminConfig {
            enabled: env_bool("ADMIN_ENABLED")?.unwrap_or(true),
            listen: SocketAddr::new(host, port),
            password,
            session_ttl: SESSION_TTL,
        })
    }
}

/// Shared state of the admin server (clone: reference-counted).
#[derive(Clone)]
pub struct AdminState {
    /// Password, sessions, login rate limit.
    pub auth: Arc<auth::Auth>,
    /// The usage database, read live (the same store the recorder writes).
    pub usage: Arc<dyn UsageQuery>,
    /// Proxies whose `X-Forwarded-For` is believed (the login rate limit is per client IP).
    pub trusted_proxies: Arc<[TrustedProxy]>,
}

impl AdminState {
    /// Build the state over `store`, setting up the password (see [`auth::Auth::init`]).
    ///
    /// Errors: the password hash cannot be read or stored.
    pub fn new<S>(
        config: &AdminConfig,
        store: Arc<S>,
        trusted_proxies: Vec<TrustedProxy>,
    ) -> Result<AdminState, String>
    where
        S: UsageQuery + OverrideStore + 'static,
    {
        let auth = auth::Auth::init(
            Arc::clone(&store) as Arc<dyn OverrideStore>,
            config.password.as_deref(),
            config.session_ttl,
        )?;
        Ok(AdminState {
            auth: Arc::new(auth),
            usage: store,
            trusted_proxies: trusted_proxies.into(),
        })
    }
}

/// The admin API under `/api` (without the auth layer): auth routes, usage routes, the OpenAPI
/// document, and `extra` (the catalog/settings/pricing routes of the overrides layer).
pub fn api_routes(extra: Route) -> Route {
    extra
        .at("/login", poem::post(auth::login))
        .at("/logout", poem::post(auth::logout))
        .at("/session", poem::get(auth::session))
        .at("/password", poem::post(auth::change_password))
        .at("/openapi.json", poem::get(ui::openapi))
        .nest("/usage", usage::routes())
}

/// The admin route table: the UI at `/` and `/assets/*` (public), the API at `/api/*` behind
/// [`auth::guard`]; `extra` as in [`api_routes`]. Unknown `/api` paths answer the JSON error
/// format.
pub fn app(state: AdminState, extra: Route) -> impl Endpoint {
    let api = api_routes(extra).around(auth::guard);
    Route::new()
        .at("/", poem::get(ui::index))
        .at("/assets/*path", poem::get(ui::asset))
        .nest("/api", api)
        .data(state)
        .around(|ep, req| async move {
            let method = req.method().clone();
            let path = req.original_uri().path().to_owned();
            let resp = match ep.call(req).await {
                Ok(resp) => resp,
                Err(e) if e.is::<NotFoundError>() => {
                    AdminError::NotFound(format!("no route {method} {path}")).into_response()
                }
                Err(e) if e.is::<MethodNotAllowedError>() => {
                    AdminError::NotFound(format!("no route {method} {path}")).into_response()
                }
                Err(e) => error::from_poem(e).into_response(),
            };
            // Changes are logged (an audit trail of the admin's writes); reads only at debug.
            let status = resp.status().as_u16();
            if matches!(method, poem::http::Method::GET | poem::http::Method::HEAD) {
                tracing::debug!(method = %method, path = %path, status, "admin request");
            } else {
                tracing::info!(method = %method, path = %path, status, "admin request");
            }
            Ok::<_, poem::Error>(resp)
        })
}

/// Serve `app` on `listener` until `shutdown` completes, then finish in-flight requests.
///
/// Errors: accept-loop I/O failures.
pub async fn run(
    listener: TcpListener,
    app: impl Endpoint + 'static,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let acceptor = crate::server::NoDelayAcceptor::new(listener)?;
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(5)))
        .await
}
