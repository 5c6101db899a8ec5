//! `research-graph-hosted`: the hosted part's commands (billing export, operators' endpoint).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use research_graph::auth::JwtVerifier;
use research_graph::config::AuthArgs;
use research_graph_hosted::api::{router, OperatorAuth};
use research_graph_hosted::billing::{invoice_lines, write_csv, write_json, Month};
use research_graph_hosted::platform::PlatformDb;

/// Hosted research-graph: platform usage and billing (requires ENABLE_BILLING).
#[derive(Parser)]
#[command(name = "research-graph-hosted", version, about)]
struct Cli {
    /// The `rg_platform` login's connection URL.
    #[arg(
        long,
        env = "PLATFORM_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    platform_database_url: Option<String>,
    /// The hosted part runs only where billing is enabled.
    #[arg(long, env = "ENABLE_BILLING", global = true,
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set, default_value_t = false)]
    enable_billing: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Billing.
    Billing {
        #[command(subcommand)]
        command: Billing,
    },
    /// Serve the operators' GraphQL endpoint (`platformUsage`) on an internal port.
    Serve {
        /// Port.
        #[arg(long, env = "PLATFORM_PORT", default_value_t = 8081)]
        port: u16,
        /// Address.
        #[arg(long, env = "PLATFORM_HOST", default_value = "127.0.0.1")]
        host: String,
        /// Dot path of the JWT claim that marks operators.
        #[arg(
            long,
            env = "PLATFORM_OPERATOR_CLAIM",
            default_value = "app_metadata.platform_role"
        )]
        operator_claim: String,
        /// The claim's value for operators.
        #[arg(long, env = "PLATFORM_OPERATOR_VALUE", default_value = "operator")]
        operator_value: String,
        /// Token verification (same settings as the public server).
        #[command(flatten)]
        auth: AuthArgs,
    },
}

#[derive(Subcommand)]
enum Billing {
    /// Writes one invoice line per tenant for a month.
    Export {
        /// The month, YYYY-MM (UTC).
        #[arg(long)]
        month: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Output file (standard output by default).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    research_graph::telemetry::init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if !cli.enable_billing {
        anyhow::bail!("the hosted part needs ENABLE_BILLING=true");
    }
    let url = cli
        .platform_database_url
        .context("PLATFORM_DATABASE_URL (the rg_platform login) is required")?;
    let db = PlatformDb::new(
        url.parse()
            .context("PLATFORM_DATABASE_URL is not a valid URL")?,
    )?;
    match cli.command {
        Command::Billing {
            command: Billing::Export { month, format, out },
        } => {
            let month = Month::parse(&month).map_err(anyhow::Error::msg)?;
            let lines = invoice_lines(&db, month).await?;
            let writer: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            match format {
                Format::Csv => write_csv(month, &lines, writer)?,
                Format::Json => write_json(month, &lines, writer)?,
            }
            tracing::info!(month = %month.label(), tenants = lines.len(), "invoice lines written");
            Ok(())
        }
        Command::Serve {
            port,
            host,
            operator_claim,
            operator_value,
            auth,
        } => {
            let settings = auth
                .jwt_settings()
                .map_err(anyhow::Error::msg)?
                .context("the operators' endpoint needs JWT_SECRET or JWT_JWKS_URL")?;
            let verifier = JwtVerifier::new(settings).map_err(anyhow::Error::msg)?;
            verifier.prime().await;
            let app = router(
                db,
                OperatorAuth {
                    verifier,
                    claim: operator_claim,
                    value: operator_value,
                },
            );
            tracing::info!(%host, port, "operators' endpoint listening");
            poem::Server::new(poem::listener::TcpListener::bind((host.as_str(), port)))
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = tokio::signal::ctrl_c().await;
                    },
                    None,
                )
                .await?;
            Ok(())
        }
    }
}
