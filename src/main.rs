//! The `esdetect` binary: a thin shell over the library (see `esdetect::cli`).

use clap::Parser;
use esdetect::cli::{self, args::Cli};

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
