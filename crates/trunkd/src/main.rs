//! trunkd: a self-hosted SIP trunking gateway daemon.
//!
//! The binary is thin: it parses the command line, loads configuration
//! through `trunkd-config`, and wires sockets, signals and the admin HTTP
//! listener around the libraries. See docs/architecture.md.

mod admin;
mod app_task;
mod application;
mod call_journal;
mod call_task;
mod cli_records;
mod cli_reload;
mod daemon;
mod engine;
mod events;
mod logging;
mod media_anchor;
mod media_lines;
mod metrics;
mod pidfile;
mod recording_task;
mod records;
mod resolver;
mod sip_log;
mod sip_redact;
mod sip_service;
mod streaming;
mod tls;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trunkd", version, about = "SIP trunking gateway daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Configuration file.
        #[arg(long, short, default_value = "config/trunkd.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file, print every error and a summary.
    CheckConfig {
        #[arg(long, short, default_value = "config/trunkd.toml")]
        config: PathBuf,
    },
    /// Ask the running daemon to re-read its configuration file.
    ///
    /// Tries the admin listener's `POST /reload` (which reports the outcome),
    /// then falls back to SIGHUP to the pid in the pid file.
    Reload {
        #[arg(long, short, default_value = "config/trunkd.toml")]
        config: PathBuf,
    },
    /// Work with the record store (spool and remote sinks).
    Records {
        #[command(subcommand)]
        command: RecordsCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum RecordsCommand {
    /// Ask the running daemon to retry every pending upload now and wait
    /// until no sink lacks a record; prints the backlog per sink. Exits 0
    /// only when the backlog is empty.
    Flush {
        #[arg(long, short, default_value = "config/trunkd.toml")]
        config: PathBuf,
        /// How long to wait for the backlog to empty.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => match daemon::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("trunkd: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { config } => check_config(&config),
        Command::Reload { config } => match cli_reload::reload(&config) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("trunkd reload: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Records {
            command: RecordsCommand::Flush { config, timeout },
        } => match cli_records::flush(&config, std::time::Duration::from_secs(timeout)) {
            Ok((report, true)) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Ok((report, false)) => {
                println!("{report}");
                eprintln!("trunkd records flush: records still pending after {timeout} s");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("trunkd records flush: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Version => {
            println!("trunkd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// `trunkd check-config`: every error on stderr, one per line, then the
/// summary on stdout; exit 0 only when the file is valid.
fn check_config(path: &std::path::Path) -> ExitCode {
    match trunkd_config::load(path) {
        Ok(c) => {
            println!("{}: OK: {}", path.display(), summary(&c.resources));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

/// `2 voice_connectors, 1 voice_connector_groups, …`
pub(crate) fn summary(r: &trunkd_config::Resources) -> String {
    r.counts()
        .iter()
        .into_iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
