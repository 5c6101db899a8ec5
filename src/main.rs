//! The `research-graph` binary: see `research-graph --help`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use research_graph::config::{Cli, Command, KeysCommand};
use research_graph::{app, telemetry};

/// mimalloc rather than the system allocator: a request allocates and frees thousands of small
/// objects across the runtime's threads, where it spends markedly less time (see
/// docs/BENCHMARKS.md) and gives memory back to the system sooner.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let result = match cli.command {
        Command::Serve(args) => app::serve(*args).await,
        Command::Migrate(args) => app::migrate(args).await,
        Command::Ingest(args) => app::ingest(args).await,
        Command::Backup(args) => app::backup(args).await,
        Command::Restore(args) => app::restore(*args).await,
        Command::Worker(args) => app::worker(*args).await,
        Command::Keys(keys) => match keys.command {
            KeysCommand::Rotate(args) => app::rotate_keys(args).await,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
