//! The `clawser` binary: parses the command line, sets up logging, runs the command.

use anyhow::Context as _;
use clap::Parser;
use clawser::cli::{run_cli, Cli, Command, LogFormatArg};
use clawser::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

// The global allocator is mimalloc, declared by regorus (its `allocator-memory-limits`
// feature, which this crate's default `mimalloc` feature turns on): the proxy allocates and
// frees many small buffers per request across threads
// (glibc malloc spent ~15% of worker time in arena consolidation under load), and regorus's
// build counts allocations, which is what lets it enforce policy.max_memory_mib.

fn init_logging(config: &Config, cli: &Cli) {
    let json = match cli.log_format {
        Some(LogFormatArg::Json) => true,
        Some(LogFormatArg::Text) => false,
        None => config.log_format == LogFormat::Json,
    };
    // Only `serve` logs at the configured level; other commands print their own output.
    let default = if matches!(cli.command, Command::Serve) {
        config.log_level.as_str()
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_env("CLAWSER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // AWS's signer traces the requests and credentials it signs: never, at any level.
    let filter = match "aws_sigv4=off".parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else if ansi {
        builder.init();
    } else {
        builder.fmt_fields(plain_fields()).init();
    }
}

/// Text log fields as tracing-subscriber's default formatter writes them without colours
/// (`message` bare, then `name=value` with values in `Debug` form, space-separated), minus its
/// per-field styling: two no-op ANSI paints per field came to about 9,000 instructions per
/// decision line, 2.6% of a proxied request's (callgrind).
fn plain_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let name = field.name();
        if name == "message" {
            write!(w, "{value:?}")
        } else {
            write!(w, "{}={value:?}", name.strip_prefix("r#").unwrap_or(name))
        }
    })
    .delimited(" ")
}

fn main() -> anyhow::Result<()> {
    // regorus reports some evaluation steps through anyhow errors; with RUST_BACKTRACE set in
    // the environment, each would capture a backtrace (a quarter of a policy decision's
    // time). Panics still get backtraces; set RUST_LIB_BACKTRACE=1 to have them anyway.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    // Inside an isolated run: no config (it is hidden there), no logging setup.
    if let Command::SandboxExec { cmd } = &cli.command {
        let Err(e) = clawser::sandbox::confine::exec(cmd);
        eprintln!("clawser: {e}");
        std::process::exit(126);
    }
    if let Command::SandboxRelay { port, socket, cmd } = cli.command {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        match runtime.block_on(clawser::sandbox::relay::run(port, socket, cmd)) {
            Ok(code) => std::process::exit(code),
            Err(e) => {
                eprintln!("clawser: {e}");
                std::process::exit(126);
            }
        }
    }
    let config = Config::load(cli.config.as_deref()).context("loading the configuration")?;
    init_logging(&config, &cli);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.proxy.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(run_cli(cli, config)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("clawser: {e}");
            std::process::exit(1);
        }
    }
}
