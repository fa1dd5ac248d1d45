//! The `esdetect` binary: a thin shell over the library (see `esdetect::cli`).

use clap::Parser;
use std::io::IsTerminal;
use esdetect::cli::{self, args::Cli};

/// mimalloc instead of the system allocator: the data path allocates and frees a few dozen small objects per
/// event (projections, shared events, per-millisecond buffers); measured side by side `esdetect test` took a
/// median of 0.42 against 0.48 CPU s with glibc's malloc (benches/README.md). The library leaves the choice
/// to whoever links it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // Colour in log lines only on a terminal, and never with --no-color or NO_COLOR (no-color.org).
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !cli.no_color && !no_color_env && std::io::stderr().is_terminal();
    if let Err(e) = init_logging(cli.log_filter(), cli.log_json || cli::daemon::config_wants_json_logs(&cli), ansi) {
        eprintln!("error: {e}");
        std::process::exit(cli::EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(cli::EXIT_USAGE);
        }
    };
    let code = match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // The whole chain on one line; a cause whose text a message already names is not repeated.
            eprintln!("error: {}", esdetect::es::chain_message(&*e));
            cli::EXIT_USAGE
        }
    };
    std::process::exit(code);
}

/// Starts logging to stderr. A filter that does not parse is a usage error, not silently `warn`.
fn init_logging(filter: &str, json: bool, ansi: bool) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::builder().parse(filter).map_err(|e| {
        format!("--log {filter:?} is not a log filter ({e}); use a level (error, warn, info, debug, trace) or e.g. \"esdetect=debug,warn\"")
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
