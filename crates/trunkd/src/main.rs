//! trunkd: a self-hosted SIP trunking gateway daemon.
//!
//! The binary is thin: it parses the command line, loads configuration
//! through `trunkd-config`, and wires sockets, signals and the admin HTTP
//! listener around the libraries. See docs/architecture.md.

mod admin;
mod admin_client;
mod admin_tls;
mod api;
mod app_task;
mod application;
mod call_journal;
mod call_task;
mod cli_api;
mod cli_records;
mod cli_reload;
mod daemon;
mod deadline;
mod engine;
mod events;
mod hep;
mod logging;
mod malloc_tuning;
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
mod udp_queue;

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
    /// The phone-number inventory and its lifecycle, through the admin API
    /// (token in TRUNKD_ADMIN_TOKEN or TRUNKD_ADMIN_TOKEN_FILE).
    Numbers {
        #[arg(long, short, global = true, default_value = "config/trunkd.toml")]
        config: PathBuf,
        /// Print the API's JSON answer.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: NumbersCli,
    },
    /// Calls in progress with their quality per side (like
    /// `rtpengine-ctl list`), or hang one up.
    Calls {
        #[arg(long, short, default_value = "config/trunkd.toml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        /// Hang up the call with this transaction id.
        #[arg(long)]
        hangup: Option<String>,
    },
    /// Carrier hosts and origination routes with their state (calls and
    /// OPTIONS probing).
    Routes {
        #[arg(long, short, default_value = "config/trunkd.toml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum NumbersCli {
    /// List numbers (every page), optionally by status or voice connector.
    List {
        /// Unassigned, Assigned, DeleteInProgress or Deleted.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        voice_connector: Option<String>,
    },
    /// One number.
    Show { number: String },
    /// Put an unassigned number in the deletion queue.
    Delete { number: String },
    /// Take a number back from the deletion queue.
    Restore { number: String },
    /// Assign a number to a voice connector or group.
    Assign {
        number: String,
        #[arg(long)]
        voice_connector: Option<String>,
        #[arg(long)]
        group: Option<String>,
        /// Move it even when it is assigned elsewhere.
        #[arg(long)]
        force: bool,
    },
    /// Remove a number from its voice connector or group.
    Unassign {
        number: String,
        #[arg(long)]
        voice_connector: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Set the name sent as the caller's display name.
    SetCallingName { number: String, name: String },
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
        Command::Numbers {
            config,
            json,
            command,
        } => {
            use cli_api::NumbersCommand as N;
            let cmd = match command {
                NumbersCli::List {
                    status,
                    voice_connector,
                } => N::List {
                    status,
                    voice_connector,
                },
                NumbersCli::Show { number } => N::Show(number),
                NumbersCli::Delete { number } => N::Delete(number),
                NumbersCli::Restore { number } => N::Restore(number),
                NumbersCli::Assign {
                    number,
                    voice_connector,
                    group,
                    force,
                } => N::Assign {
                    number,
                    voice_connector,
                    group,
                    force,
                },
                NumbersCli::Unassign {
                    number,
                    voice_connector,
                    group,
                } => N::Unassign {
                    number,
                    voice_connector,
                    group,
                },
                NumbersCli::SetCallingName { number, name } => N::SetCallingName { number, name },
            };
            print_outcome("numbers", cli_api::numbers(&config, cmd, json))
        }
        Command::Calls {
            config,
            json,
            hangup,
        } => print_outcome("calls", cli_api::calls(&config, hangup.as_deref(), json)),
        Command::Routes { config, json } => print_outcome("routes", cli_api::routes(&config, json)),
        Command::Version => {
            println!("trunkd {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Prints a CLI command's output, or its error on stderr (exit 1).
fn print_outcome(what: &str, outcome: anyhow::Result<String>) -> ExitCode {
    match outcome {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trunkd {what}: {e:#}");
            ExitCode::FAILURE
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
