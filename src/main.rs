//! The `echo-gateway` command line.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use echo_gateway::config::{self, Config};
use echo_gateway::telemetry::{self, LogFormat};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(cli.serve)) {
        Command::Serve(args) => serve(args),
        Command::Validate { paths } => validate(&paths),
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
    let mut cfg = match &args.config {
        Some(p) => match config::load(std::slice::from_ref(p)) {
            Ok(c) => c,
            Err(errs) => {
                for e in &errs.0 {
                    tracing::error!(error = %e, "invalid config");
                }
                eprintln!("{errs}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Err(e) = cfg.resolve_env() {
        tracing::error!(error = %e, "invalid config");
        eprintln!("echo-gateway: {e}");
        return ExitCode::from(2);
    }
    for a in &args.listen {
        if a.parse::<std::net::SocketAddr>().is_err() {
            eprintln!("--listen `{a}` is not an address and port (for example 0.0.0.0:8080)");
            return ExitCode::from(2);
        }
    }
    if !args.listen.is_empty() {
        cfg.server.listen = args.listen.clone();
    }
    if let Some(a) = args.admin_listen {
        if a.parse::<std::net::SocketAddr>().is_err() {
            eprintln!(
                "--admin-listen `{a}` is not an address and port (for example 127.0.0.1:9090)"
            );
            return ExitCode::from(2);
        }
        cfg.admin.listen = Some(a);
    }
    match echo_gateway::server::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "echo-gateway failed");
            eprintln!("echo-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
