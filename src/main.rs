//! The `llm-relay` binary: parse arguments, start tracing, call `server::run`.

use clap::{Parser, Subcommand};
use llm_relay::catalog::{self, ModelId, PROVIDERS};
use llm_relay::config::Config;
use llm_relay::relay::AppState;

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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr (stdout stays for command output), coloured only on a terminal.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            // poem's own start-up lines repeat ours; keep its warnings.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,poem::server=warn".into()),
        )
        .init();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("llm-relay: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
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
        Command::Serve => serve(config),
    }
}

fn serve(config: Config) -> std::process::ExitCode {
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
        let state = match AppState::new(config) {
            Ok(s) => s,
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
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        };
        match llm_relay::server::run(listener, state, shutdown).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("llm-relay: server error: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
