//! Structured logs with `tracing`: `RUST_LOG` filters, `LOG_FORMAT=json` for machines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to standard error.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // try_init: tests may install their own subscriber first.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
