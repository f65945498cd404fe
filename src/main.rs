//! The `echo-gateway` command line.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use echo_gateway::config::{self, Config, Overrides};
use echo_gateway::telemetry::{self, LogFormat};

/// jemalloc, which hands freed memory back to the system: loading or
/// reloading 100k endpoints builds a parse tree several times the size of
/// what is kept, and the system allocator keeps those pages resident.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: a background thread returns
/// pages freed for a second (dirty) to the system, at once for pages it
/// has already advised the kernel about (muzzy).
// SAFETY: `_rjem_malloc_conf` is the symbol jemalloc reads its options from,
// a pointer to a NUL-terminated string; a `&[u8]` starts with that pointer,
// and the bytes are 'static and end in NUL. Nothing else defines the symbol.
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[derive(Parser)]
#[command(
    name = "echo-gateway",
    version,
    about = "A mock HTTP gateway on Pingora",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, `serve` runs with these arguments.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve mocks (the default command).
    Serve(ServeArgs),
    /// Check config files; print every error as file:line:col and exit 1.
    Validate {
        /// Config files or directories of *.toml files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the runtime endpoints of the store as a TOML config file
    /// (stop the gateway first for the embedded store, or use GET /_echo/export).
    Export(ExportArgs),
    /// GET a URL; exit 0 on a 2xx answer, 1 otherwise.
    Healthcheck {
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A config file or a directory of *.toml files; without it the gateway
    /// runs on its built-in defaults.
    #[arg(long, short, env = "ECHO_CONFIG")]
    config: Option<PathBuf>,
    /// Mock listener address(es), replacing `server.listen`.
    #[arg(long, env = "ECHO_LISTEN", value_delimiter = ',')]
    listen: Vec<String>,
    /// Give the admin API a listener of its own, replacing `admin.listen`.
    #[arg(long, env = "ECHO_ADMIN_LISTEN")]
    admin_listen: Option<String>,
    /// Log format.
    #[arg(long, env = "ECHO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Store of runtime endpoints: embedded (default), redis or memory.
    #[arg(long, env = "ECHO_STORE")]
    store: Option<String>,
    /// The embedded store's database file (default data/echo-gateway.redb).
    #[arg(long, env = "ECHO_DATA")]
    data: Option<PathBuf>,
    /// The redis store's URL, e.g. redis://127.0.0.1:6379/0.
    #[arg(long, env = "ECHO_REDIS_URL")]
    redis_url: Option<String>,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// The config whose [store] section to read.
    #[arg(long, short, env = "ECHO_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "ECHO_STORE")]
    store: Option<String>,
    #[arg(long, env = "ECHO_DATA")]
    data: Option<PathBuf>,
    #[arg(long, env = "ECHO_REDIS_URL")]
    redis_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve(args),
        Command::Validate { paths } => validate(&paths),
        Command::Export(args) => export(args),
        Command::Healthcheck { url, timeout_ms } => {
            let (ok, line) =
                echo_gateway::healthcheck::check(&url, Duration::from_millis(timeout_ms));
            println!("{line}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn export(args: ExportArgs) -> ExitCode {
    let overrides = Overrides {
        store: args.store,
        data: args.data,
        redis_url: args.redis_url,
        ..Overrides::default()
    };
    let paths: Vec<PathBuf> = args.config.into_iter().collect();
    let cfg = if paths.is_empty() {
        let mut cfg = Config::default();
        overrides
            .apply(&mut cfg)
            .map(|()| cfg)
            .map_err(|e| e.to_string())
    } else {
        config::load_with(&paths, &overrides).map_err(|e| e.to_string())
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let loaded = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let store = echo_gateway::store::open(&cfg.store).await?;
                anyhow::Ok(store.load().await?)
            })
        });
    match loaded {
        Ok(runtime) => {
            print!("{}", echo_gateway::admin::export::runtime_toml(&runtime));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo-gateway export: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    match config::load(paths) {
        Ok(cfg) => {
            println!("{}", config::summary(&cfg));
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s)", errs.0.len());
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let overrides = Overrides {
        listen: args.listen,
        admin_listen: args.admin_listen,
        store: args.store,
        data: args.data,
        redis_url: args.redis_url,
        admin_token: std::env::var("ECHO_ADMIN_TOKEN").ok(),
        emf: std::env::var("ECHO_EMF")
            .ok()
            .map(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on")),
        service_name: std::env::var("ECHO_SERVICE_NAME")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let paths: Vec<PathBuf> = args.config.into_iter().collect();
    let loaded = if paths.is_empty() {
        let mut cfg = Config::default();
        overrides
            .apply(&mut cfg)
            .map(|()| cfg)
            .map_err(|e| e.to_string())
    } else {
        config::load_with(&paths, &overrides).map_err(|errs| errs.to_string())
    };
    let mut cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            for line in e.lines() {
                tracing::error!(error = %line, "invalid config");
            }
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = cfg.resolve_env() {
        tracing::error!(error = %e, "invalid config");
        eprintln!("echo-gateway: {e}");
        return ExitCode::from(2);
    }
    match echo_gateway::server::run(cfg, paths, overrides) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "echo-gateway failed");
            eprintln!("echo-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
