//! The `llm-relay` binary: parse arguments, start tracing, call `server::run`.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use llm_relay::admin::{AdminConfig, AdminState};
use llm_relay::catalog::{self, ModelId, PROVIDERS};
use llm_relay::config::{Config, UsageConfig};
use llm_relay::relay::AppState;
use llm_relay::store::embedded::RedbStore;
use llm_relay::store::{OverrideStore, UsageQuery};
use llm_relay::usage::query::{Dimension, Filter, parse_time, render_table};
use llm_relay::usage::recorder::Recorder;

/// Self-hosted LLM gateway: Ollama and OpenAI APIs over many providers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (default). Configuration comes from the environment (see README).
    Serve,
    /// List the catalog: every model with its provider, context length and price.
    Models,
    /// Show which providers are enabled by the current environment, then exit.
    Check,
    /// Exit 0 when the server on this machine is ready (`GET /health/ready` on `PORT`, at `HOST`
    /// or 127.0.0.1 when it listens on all addresses): the container HEALTHCHECK.
    Health,
    /// Print usage totals from the database in DATA_DIR as a table (the server must be stopped:
    /// the database file is opened exclusively).
    Usage {
        /// From this time: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`, UTC), or an
        /// age (`24h`, `7d`). Default: everything.
        #[arg(long)]
        since: Option<String>,
        /// Until this time (exclusive), same formats. Default: now.
        #[arg(long)]
        until: Option<String>,
        /// Group rows by `tag`, `provider`, `model` or `client`; without it, one row per day.
        #[arg(long)]
        by: Option<String>,
        /// Only requests with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only this (resolved) model id.
        #[arg(long)]
        model: Option<String>,
    },
}

fn usage_command(
    usage: &UsageConfig,
    since: Option<String>,
    until: Option<String>,
    by: Option<String>,
    filter: Filter,
) -> Result<String, String> {
    let now = llm_relay::usage::recorder::now_ms();
    let mut f = filter;
    f.since_ms = since.as_deref().map(|s| parse_time(s, now)).transpose()?;
    f.until_ms = until.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let by = by
        .as_deref()
        .map(|b| {
            Dimension::parse(b)
                .ok_or_else(|| format!("--by {b:?}: expected tag, provider, model or client"))
        })
        .transpose()?;
    // Never create an empty database here: a wrong DATA_DIR (or working directory, for the
    // default ./data) would otherwise look like "no usage".
    let file = usage.data_dir.join(llm_relay::store::embedded::FILE_NAME);
    if !file.exists() {
        return Err(format!(
            "no usage database at {}: set DATA_DIR to the server's data directory (default \
             ./data, relative to where the server was started)",
            file.display()
        ));
    }
    let store = RedbStore::open(&usage.data_dir).map_err(|e| e.to_string())?;
    let total = store.summary(&f).map_err(|e| e.to_string())?;
    let (heading, rows) = match by {
        Some(d) => (
            format!("{d:?}").to_lowercase(),
            store.breakdown(&f, d).map_err(|e| e.to_string())?,
        ),
        None => (
            "day".to_string(),
            store
                .series(&f, llm_relay::usage::query::Granularity::Day)
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(render_table(&heading, &rows, &total))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr (stdout stays for command output), coloured only on a terminal.
    // RUST_LOG (or RUST_LOG_FILE, like every variable); poem's own start-up lines repeat ours, so
    // the default keeps only its warnings.
    let filter = match llm_relay::config::env_var("RUST_LOG") {
        Ok(None) => tracing_subscriber::EnvFilter::new("info,poem::server=warn"),
        Ok(Some(v)) => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("llm-relay: configuration error: RUST_LOG={v:?} is not valid: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("llm-relay: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Logging is best effort: a failed write (stderr closed) is not reported on stderr again,
    // where `eprintln!` would panic, e.g. in a request's drop before its usage record is sent.
    tracing_subscriber::fmt()
        .with_writer(llm_relay::logbuf::StderrLog)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .with_env_filter(filter)
        .init();
    // `models` and `usage` read no server configuration: a bad PORT must not block them.
    let config = || {
        Config::from_env()
            .and_then(|c| UsageConfig::from_env().map(|u| (c, u)))
            .map_err(|e| {
                eprintln!("llm-relay: configuration error: {e}");
                std::process::ExitCode::from(2)
            })
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Models => {
            for m in ModelId::all() {
                let (i, p) = (m.info(), m.pricing());
                println!(
                    "{:<12} {:<48} ctx {:>8}  ${}/${} per 1M",
                    i.provider.name(),
                    i.id,
                    i.context_length,
                    p.input,
                    p.output
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Command::Check => {
            let (config, usage) = match config() {
                Ok(c) => c,
                Err(code) => return code,
            };
            println!(
                "listen {}; default model {}; body limit {} bytes; upstream connect timeout {} ms, \
                 read timeout {} ms, stream idle timeout {} ms; shutdown grace {} ms; image URL \
                 fetch {}",
                config.listen,
                config
                    .default_model
                    .as_deref()
                    .unwrap_or("(none: unknown names get 404)"),
                config.max_body_bytes,
                config.connect_timeout.as_millis(),
                config.read_timeout.as_millis(),
                config.stream_idle_timeout.as_millis(),
                config.shutdown_grace.as_millis(),
                if config.image_url_fetch { "on" } else { "off" },
            );
            println!(
                "usage database {}; tracking {}; default tag {}; retention {} days; DNS {}; \
                 trusted proxies {}",
                usage
                    .data_dir
                    .join(llm_relay::store::embedded::FILE_NAME)
                    .display(),
                if usage.settings.tracking { "on" } else { "off" },
                usage.settings.default_tag,
                usage.settings.retention_days,
                if usage.settings.dns { "on" } else { "off" },
                usage.trusted_proxies.len(),
            );
            for p in &PROVIDERS {
                let state = if config.is_enabled(p.id) {
                    "enabled"
                } else {
                    "no key"
                };
                let base = config
                    .provider(p.id)
                    .map_or(p.base_url, |c| c.base_url.as_str());
                println!("{:<12} {:<8} {}", p.name, state, base);
            }
            for i in &config.ollama.instances {
                println!(
                    "{:<12} {:<8} {} (Ollama instance, models discovered every {}s)",
                    i.name,
                    "instance",
                    llm_relay::instances::redact_url(&i.base_url),
                    config.ollama.refresh.as_secs()
                );
            }
            match AdminConfig::from_env() {
                Ok(a) if a.enabled => println!(
                    "admin UI {}; password {}",
                    a.listen,
                    if a.password.is_some() {
                        "from ADMIN_PASSWORD"
                    } else {
                        "stored (generated and logged on first start)"
                    }
                ),
                Ok(_) => println!("admin UI disabled (ADMIN_ENABLED=false)"),
                Err(e) => {
                    eprintln!("llm-relay: configuration error: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
            println!("prices: {}", catalog::PRICING_SOURCE);
            std::process::ExitCode::SUCCESS
        }
        Command::Usage {
            since,
            until,
            by,
            tag,
            provider,
            model,
        } => {
            let filter = Filter {
                // Stored tags are normalised (lower case, key-looking values hashed): so is this.
                tag: tag.map(|t| {
                    llm_relay::usage::tags::normalise(&t)
                        .into_iter()
                        .next()
                        .unwrap_or(t)
                }),
                // Stored providers and models are the resolved, lower-case ids: an alias or
                // another spelling of a catalog model finds its records.
                provider: provider.map(|p| p.trim().to_lowercase()),
                model: model.map(|m| {
                    catalog::resolve(&m)
                        .map_or_else(|| m.trim().to_lowercase(), |id| id.info().id.to_string())
                }),
                ..Filter::default()
            };
            match UsageConfig::from_env().and_then(|u| usage_command(&u, since, until, by, filter))
            {
                Ok(table) => {
                    print!("{table}");
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("llm-relay usage: {e}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Command::Health => health_command(),
        Command::Serve => match config().and_then(|c| {
            AdminConfig::from_env().map(|a| (c, a)).map_err(|e| {
                eprintln!("llm-relay: configuration error: {e}");
                std::process::ExitCode::from(2)
            })
        }) {
            Ok(((config, usage), admin)) => serve(config, usage, admin),
            Err(code) => code,
        },
    }
}

/// `llm-relay health`: probe the local server (reads only `HOST` and `PORT`).
fn health_command() -> std::process::ExitCode {
    let addr = (|| -> Result<std::net::SocketAddr, String> {
        let host = match llm_relay::config::env_var("HOST")? {
            None => std::net::IpAddr::from([127, 0, 0, 1]),
            Some(h) => h
                .parse::<std::net::IpAddr>()
                .map_err(|_| format!("HOST={h:?} is not an IP address"))?,
        };
        let host = if host.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            host
        };
        let port = match llm_relay::config::env_var("PORT")? {
            None => 11434,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        };
        Ok(std::net::SocketAddr::new(host, port))
    })();
    match addr.and_then(|a| llm_relay::health::probe(a, std::time::Duration::from_secs(3))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm-relay health: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Open the usage database and start its writer, with stored settings over the env defaults.
/// Returns the store too: the runtime overrides and the admin server (usage queries, admin
/// password) use the same file (opened once: redb holds it exclusively).
fn start_recorder(usage: UsageConfig) -> Result<(Arc<Recorder>, Arc<RedbStore>), String> {
    let store = Arc::new(RedbStore::open(&usage.data_dir).map_err(|e| e.to_string())?);
    let settings = usage
        .settings
        .overlay(|k| store.get_setting(k).ok().flatten());
    tracing::info!(
        db = %store.path().display(),
        tracking = settings.tracking,
        retention_days = settings.retention_days,
        "usage database open"
    );
    let sink: Arc<dyn llm_relay::store::UsageSink> = store.clone();
    Recorder::start(sink, settings, usage.trusted_proxies)
        .map(|r| (r, store))
        .map_err(|e| format!("cannot start the usage writer: {e}"))
}

/// Bind the admin listener and build its app, unless `ADMIN_ENABLED=false`.
async fn start_admin(
    admin: &AdminConfig,
    store: Arc<RedbStore>,
    trusted_proxies: Vec<llm_relay::usage::tags::TrustedProxy>,
) -> Result<Option<(tokio::net::TcpListener, AdminState)>, String> {
    if !admin.enabled {
        tracing::info!("admin server disabled (ADMIN_ENABLED=false)");
        return Ok(None);
    }
    let state = AdminState::new(admin, store, trusted_proxies)?;
    let listener = tokio::net::TcpListener::bind(admin.listen)
        .await
        .map_err(|e| format!("cannot listen on {} (ADMIN_PORT): {e}", admin.listen))?;
    let bound = listener.local_addr().map_or(admin.listen, |a| a);
    tracing::info!(listen = %bound, "admin UI listening");
    Ok(Some((listener, state)))
}

fn serve(config: Config, usage: UsageConfig, admin: AdminConfig) -> std::process::ExitCode {
    // This runtime runs start-up, signals, the admin server and Ollama-instance discovery; the API
    // is served by `SERVER_THREADS` threads with runtimes of their own (`server::run_threads`).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("llm-relay: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listen = config.listen;
        let enabled: Vec<&str> = PROVIDERS
            .iter()
            .filter(|p| config.is_enabled(p.id))
            .map(|p| p.name)
            .collect();
        let trusted_proxies = usage.trusted_proxies.clone();
        let usage_defaults = usage.settings.clone();
        let (recorder, store) = match start_recorder(usage) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("llm-relay: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let state = match AppState::new(config) {
            Ok(s) => s.with_recorder(Arc::clone(&recorder)),
            Err(e) => {
                eprintln!("llm-relay: cannot build the HTTP client: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        // Runtime overrides (custom providers, models, aliases, prices, settings) from the same
        // database file.
        let state = match state.with_override_store(store.clone(), usage_defaults) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("llm-relay: cannot load the runtime overrides: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let listener = match llm_relay::server::bind(listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("llm-relay: cannot listen on {listen}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        // The bound address, so PORT=0 shows the port it got.
        let bound = listener.local_addr().map_or(listen, |a| a);
        let instances: Vec<&str> = state.config.ollama.instances.iter().map(|i| i.name).collect();
        tracing::info!(listen = %bound, providers = ?enabled, ollama_instances = ?instances, "llm-relay listening");
        let admin = match start_admin(&admin, store, trusted_proxies).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("llm-relay: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        // One signal stops both servers.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let signal_tx = Arc::clone(&stop_tx);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = signal_tx.send(true);
        });
        let admin_task = admin.map(|(listener, admin_state)| {
            // The catalog/settings/pricing handlers read the API server's state (overrides).
            let app = poem::EndpointExt::data(
                llm_relay::admin::app(admin_state, llm_relay::overrides::api::routes()),
                state.clone(),
            );
            tokio::spawn(llm_relay::admin::run(listener, app, stopped(stop_rx.clone())))
        });
        let threads = state.config.server_threads;
        let result = llm_relay::server::run_threads(listener, state, threads, stop_rx).await;
        // The admin server stops with the API server, whatever ended it.
        let _ = stop_tx.send(true);
        if let Some(task) = admin_task {
            match task.await {
                Ok(Err(e)) => tracing::warn!(error = %e, "admin server error"),
                Err(e) => tracing::warn!(error = %e, "admin server task failed"),
                Ok(Ok(())) => {}
            }
        }
        // In-flight requests are done: commit every pending usage record before exiting.
        let flushing = Arc::clone(&recorder);
        let _ = tokio::task::spawn_blocking(move || flushing.shutdown()).await;
        if recorder.dropped() > 0 {
            tracing::warn!(
                dropped = recorder.dropped(),
                "usage records dropped (channel full)"
            );
        }
        match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("llm-relay: server error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM (`docker stop`, systemd, Kubernetes): both are
/// graceful shutdowns that finish in-flight requests and flush the usage records.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops gracefully")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
