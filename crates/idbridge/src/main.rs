//! `idbridge`: the command line. `serve --config FILE`, `serve --dev`, `migrate`,
//! `doctor`, `backup`, `probe`, `keys list|rotate|generate-master`, `admin
//! find|show|unlink|disable|enable|revoke|audit|generate-token`.

use clap::{Parser, Subcommand};
use idbridge::{registry, DevHome};
use idbridge_server::config::Settings;
use idbridge_server::telemetry::otel::Pipeline;
use idbridge_server::{build_state, run, stop_on_signals, Clock, Options};
use opentelemetry_sdk::trace::SdkTracer;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "idbridge",
    version,
    about = "An OpenID Connect identity broker with first-class WeChat login"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// TOML config file (every key can be overridden by IDBRIDGE__SECTION__KEY).
        /// With --dev: added to dev mode (its [[connectors]] and [[clients]], e.g.
        /// an upstream or an app to try); dev mode's own keys win.
        #[arg(long, short, required_unless_present = "dev")]
        config: Option<PathBuf>,
        /// Development mode: SQLite under --dir, the development connector, the
        /// simulators' sign-ins, and a demo app at /demo.
        #[arg(long)]
        dev: bool,
        /// Port for --dev.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Directory for --dev state.
        #[arg(long, default_value = ".idbridge-dev")]
        dir: PathBuf,
        /// For --dev: the WeChat simulator's port (default: --port + 1); the other
        /// simulators take the ports after it, in the banner's order (0: any free ports).
        #[arg(long)]
        sim_port: Option<u16>,
        /// For --dev: the origin of a single-page app to try (e.g.
        /// http://127.0.0.1:5173). Registers the public client `dev-spa` with
        /// redirect URI ORIGIN/callback and post-logout redirect URI ORIGIN/;
        /// ORIGIN gets CORS at the token, userinfo and revocation endpoints.
        #[arg(long, requires = "dev")]
        spa_origin: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config without starting; prints every problem at once.
    Doctor {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Copy the SQLite database to a new file while the broker serves (for
    /// Postgres, prints the pg_dump command to use instead).
    Backup {
        #[arg(long, short)]
        config: PathBuf,
        /// The backup file to write; it must not exist yet.
        #[arg(long)]
        to: PathBuf,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// One HTTP GET to a health endpoint; exit 0 on a 2xx answer, 1 otherwise
    /// (container health checks without a shell or curl).
    Probe {
        /// The endpoint, plain http (e.g. http://127.0.0.1:8080/readyz).
        #[arg(default_value = "http://127.0.0.1:8080/livez")]
        url: String,
        /// Give up after this many seconds in all.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
    },
    /// Operators: find users, show, unlink, disable, enable, revoke, read the
    /// audit log (directly on the database; see docs/admin.md).
    Admin {
        #[command(subcommand)]
        command: idbridge::admin::AdminCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List signing keys and their schedule.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the next key for an algorithm; it is published now and signs after
    /// signing.publish_ahead_hours.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, default_value = "RS256")]
        alg: String,
    },
    /// Print a new random master key for signing.master_key.
    GenerateMaster,
}

/// The log on stderr, and the OpenTelemetry layer when tracing is on. Spans go
/// to the OpenTelemetry layer only (the log lines stay as they are); without it
/// no layer wants a span, so none is made.
fn init_logging(format: &str, default_level: &str, tracer: Option<SdkTracer>) {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{filter, Layer, Registry};
    let env_filter = tracing_subscriber::EnvFilter::try_from_env("IDBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let events_only = filter::filter_fn(|m| !m.is_span());
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let tracing_on = tracer.is_some();
    if let Some(tracer) = tracer {
        // The broker's own spans (request, store, upstream), never events: a log
        // line's fields are not span attributes.
        let ours = filter::filter_fn(|m| {
            m.is_span() && m.level() <= &tracing::Level::INFO && m.target().starts_with("idbridge")
        });
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(ours)
                .boxed(),
        );
    }
    if format == "json" && tracing_on {
        // Each line inside a span names its trace (`trace_id`, `span_id`).
        let json = tracing_subscriber::fmt::format().json().with_target(false);
        layers.push(
            fmt.json()
                .event_format(idbridge::log_trace::WithTraceId(json))
                .with_filter(env_filter.and(events_only))
                .boxed(),
        );
    } else if format == "json" {
        layers.push(fmt.json().with_filter(env_filter.and(events_only)).boxed());
    } else {
        // Control characters in values are escaped, so no value can forge a line.
        layers.push(
            fmt.fmt_fields(idbridge::log_fields::EscapedFields)
                .with_filter(env_filter.and(events_only))
                .boxed(),
        );
    }
    tracing_subscriber::registry().with(layers).init();
}

fn load(path: &std::path::Path) -> Result<Settings, ExitCode> {
    idbridge::load_config(path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A probe runs every few seconds in a container: no runtime, no log set-up.
    if let Command::Probe { url, timeout_secs } = &cli.command {
        return match idbridge::probe::probe(url, std::time::Duration::from_secs(*timeout_secs)) {
            Ok(status) => {
                println!("{status}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("probe failed: {e}");
                ExitCode::from(1)
            }
        };
    }
    // `admin` commands print what they did; their log lines only on request.
    let level = match cli.command {
        Command::Admin { .. } => "warn",
        _ => "info",
    };
    // `serve --config`: the file is read before the log is set up, for its
    // `[telemetry.tracing]` (`serve --dev`: the OTEL_* variables only).
    let loaded = match &cli.command {
        Command::Serve {
            config: Some(path),
            dev: false,
            ..
        } => match load(path) {
            Ok(s) => Some(s),
            Err(code) => return code,
        },
        _ => None,
    };
    let tracing_pipeline = match &cli.command {
        Command::Serve { .. } => {
            let file = loaded
                .as_ref()
                .map(|s| s.telemetry.tracing.clone())
                .unwrap_or_default();
            match Pipeline::start(&file, |k| std::env::var(k).ok()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("idbridge: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    init_logging(
        &cli.log_format,
        level,
        tracing_pipeline.as_ref().map(Pipeline::tracer),
    );
    if let Some(p) = &tracing_pipeline {
        tracing::info!(endpoint = %p.resolved.endpoint, service = %p.resolved.service_name, "traces exported over OTLP/HTTP");
    }
    let code = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve {
                config,
                dev,
                port,
                dir,
                sim_port,
                spa_origin,
            } => serve(loaded, config, dev, port, dir, sim_port, spa_origin).await,
            Command::Migrate { config } => migrate(config).await,
            Command::Doctor { config } => idbridge::doctor::run(&config).await,
            Command::Backup { config, to } => backup(config, to).await,
            Command::Keys { command } => keys(command).await,
            Command::Admin { command } => idbridge::admin::run(command).await,
            Command::Probe { .. } => ExitCode::SUCCESS, // answered above, before any set-up
        }
    });
    // After a graceful stop (SIGTERM): the spans still buffered are sent.
    if let Some(p) = tracing_pipeline {
        p.shutdown();
    }
    code
}

/// `loaded`: the file of `serve --config`, read already; `config`: its path,
/// which `serve --dev` adds to dev mode.
async fn serve(
    loaded: Option<Settings>,
    config: Option<PathBuf>,
    dev: bool,
    port: u16,
    dir: PathBuf,
    sim_port: Option<u16>,
    spa_origin: Option<String>,
) -> ExitCode {
    let clock = Arc::new(Clock::default());
    let mut fakes = None;
    let (settings, demo_secret) = if dev {
        let home = match DevHome::open(&dir) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("idbridge: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut settings = match home.settings(port, config.as_deref()).and_then(|mut s| {
            if let Some(origin) = &spa_origin {
                s.clients.push(idbridge::dev::dev_spa_client(origin)?);
            }
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("idbridge: {e}");
                return ExitCode::from(2);
            }
        };
        // The simulators on --sim-port and the ports after it (default: the
        // port after --port).
        let mut ports = idbridge::dev::Ports::new(sim_port.unwrap_or_else(|| port.wrapping_add(1)));
        match idbridge::dev::Fakes::start(&mut ports, &settings.issuer, &clock).await {
            Ok(f) => {
                f.add_connectors(&mut settings);
                fakes = Some(f);
            }
            Err(e) => {
                eprintln!("idbridge: {e}");
                return ExitCode::from(2);
            }
        }
        (settings, Some(home.demo_secret))
    } else {
        let Some(settings) = loaded else {
            return ExitCode::from(2);
        };
        (settings, None)
    };
    let bind = settings.server.bind.clone();
    let issuer = settings.issuer.clone();
    let options = Options {
        dev_mode: dev,
        demo_secret: demo_secret.clone(),
        clock,
    };
    let state = match build_state(settings, &registry(), &options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("idbridge: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("idbridge: cannot listen on {bind}: {e} (server.bind)");
            return ExitCode::from(2);
        }
    };
    tracing::info!(%issuer, %bind, dev, "idbridge is serving");
    if dev {
        println!();
        println!("  idbridge (development mode) is running.");
        println!("  Open the demo app:   {issuer}/demo");
        println!("  Discovery:           {issuer}/.well-known/openid-configuration");
        for line in fakes.iter().flat_map(|f| f.banner()) {
            println!("{line}");
        }
        if let Some(origin) = &spa_origin {
            println!(
                "  Single-page app:     client_id {} (public), redirect URI {origin}/callback",
                idbridge::DEV_SPA_CLIENT_ID
            );
        }
        println!("  State is kept in:    {}", dir.display());
        println!();
    }
    let shutdown_timeout = state.settings.server.shutdown_timeout_secs;
    match run(state, demo_secret, listener) {
        Ok(server) => {
            stop_on_signals(server.handle(), shutdown_timeout);
            match server.await {
                Ok(()) => {
                    tracing::info!("shutdown complete");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idbridge: server error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("idbridge: cannot start the HTTP server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: PathBuf) -> ExitCode {
    let settings = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match idbridge::open_store(&settings).await {
        Ok(store) => match store.migrate().await {
            Ok(applied) if applied.is_empty() => {
                println!("database is up to date");
                ExitCode::SUCCESS
            }
            Ok(applied) => {
                for m in applied {
                    println!("applied {m}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("idbridge: migration failed: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("idbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn backup(config: PathBuf, to: PathBuf) -> ExitCode {
    let settings = match load(&config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match idbridge::backup(&settings, &to).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(idbridge::BackupError::Usage(e)) => {
            eprintln!("idbridge: {e}");
            ExitCode::from(2)
        }
        Err(idbridge::BackupError::Failed(e)) => {
            eprintln!("idbridge: backup failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::GenerateMaster => match idbridge_tokens::MasterKey::generate() {
            Ok(key) => {
                println!("{}", key.encode());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("idbridge: {e}");
                ExitCode::FAILURE
            }
        },
        KeysCommand::List { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match idbridge::keys_list(&settings).await {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idbridge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        KeysCommand::Rotate { config, alg } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match idbridge::keys_rotate(&settings, &alg).await {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("idbridge: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
