//! The `llm-relay` binary: parse arguments, start tracing, call `server::run`.

use std::sync::Arc;

use clap::{Parser, Subcommand};
use llm_relay::catalog::{self, ModelId, PROVIDERS};
use llm_relay::config::{Config, UsageConfig};
use llm_relay::relay::AppState;
use llm_relay::store::embedded::RedbStore;
use llm_relay::store::{OverrideStore, UsageQuery};
use llm_relay::usage::query::{Dimension, Filter, render_table};
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

/// Parse a `--since`/`--until` value to Unix ms.
fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    for (suffix, unit_ms) in [('h', 3_600_000i64), ('d', 86_400_000)] {
        // An age: a whole number of hours or days, not negative, back no further than 1970.
        if let Some(n) = s
            .strip_suffix(suffix)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            return n
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(unit_ms))
                .map(|back| now_ms - back)
                .filter(|t| *t >= 0)
                .ok_or_else(|| format!("{s:?} reaches back before 1970"));
        }
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    if let Ok(t) = time::OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339) {
        return Ok((t.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339, YYYY-MM-DD or an age like 24h / 7d"
    ))
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Serve => match config() {
            Ok((config, usage)) => serve(config, usage),
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
fn start_recorder(usage: UsageConfig) -> Result<Arc<Recorder>, String> {
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
    Recorder::start(store, settings, usage.trusted_proxies)
        .map_err(|e| format!("cannot start the usage writer: {e}"))
}

fn serve(config: Config, usage: UsageConfig) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        let recorder = match start_recorder(usage) {
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
        let listener = match tokio::net::TcpListener::bind(listen).await {
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
        let shutdown = async {
            shutdown_signal().await;
            tracing::info!("shutting down");
        };
        let result = llm_relay::server::run(listener, state, shutdown).await;
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
