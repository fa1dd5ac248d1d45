//! The `esdetect` binary: a thin shell over the library (see `esdetect::cli`).

use clap::Parser;
use esdetect::cli::{self, args::Cli};

/// mimalloc instead of the system allocator: the data path allocates and frees a few dozen small objects per
/// event (projections, shared events, per-millisecond buffers); measured side by side it takes a quarter to a
/// third less CPU than glibc's malloc for `esdetect test` (benches/README.md). The library leaves the
/// choice to whoever links it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    init_logging(cli.log_filter(), cli.log_json || cli::daemon::config_wants_json_logs(&cli));
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
            eprintln!("error: {e:#}");
            cli::EXIT_USAGE
        }
    };
    std::process::exit(code);
}

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
