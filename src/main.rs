//! The `authward` command line: serve, demo, check, schema and the compromised-password filter's build.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use authward::config::{self, Mode};
use authward::risk::breach::{BreachError, BreachFilter};

/// mimalloc rather than glibc's malloc: the proxy allocates and frees many small objects per request, and
/// glibc's allocator was ~15-20% of the CPU of a protected sign-in (BENCHMARKS.md, "What each choice bought").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authward",
    version,
    about = "Threat-protection reverse proxy for sign-in traffic"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AUTHWARD_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing's env-filter syntax: `info`, `authward=debug`...).
    #[arg(long, global = true, default_value = "info", env = "AUTHWARD_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// The config file.
        #[arg(long, default_value = "authward.yaml")]
        config: PathBuf,
        /// Do not reload when config files change (SIGHUP and the admin API still reload).
        #[arg(long)]
        no_watch: bool,
        /// Async worker threads. 1 runs everything on a current-thread runtime (no work stealing: on
        /// one core it measured 14-28% more requests/s than a one-worker multi-thread runtime, see
        /// BENCHMARKS.md); more runs tokio's multi-thread runtime. Default: one worker per CPU.
        #[arg(long, env = "AUTHWARD_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
        worker_threads: Option<u16>,
    },
    /// Start a built-in login service with authward in front of it, and print a tour.
    Demo(authward::demo::DemoOptions),
    /// Validate config and rule files; prints FILE:LINE:COL: message for each problem.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule test cases offline; the last line is `N passed, M failed`.
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show what one request meets, stage by stage and rule by rule.
    Explain {
        /// The config.
        #[arg(long)]
        config: PathBuf,
        /// The request (YAML: method, path, headers, body/json/form, client_ip, ja4).
        #[arg(long)]
        request: PathBuf,
    },
    /// Convert rules from other products to authward YAML.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Print the JSON Schema of the config, for editors.
    Schema,
    /// The compromised-password filter.
    Breach {
        #[command(subcommand)]
        command: BreachCommand,
    },
}

#[derive(Subcommand)]
enum BreachCommand {
    /// Build the filter from a Pwned Passwords hash list (`SHA1HEX:COUNT` or `SHA1HEX` per line).
    Build {
        /// The hash list; `-` reads stdin.
        #[arg(long)]
        input: PathBuf,
        /// The filter file to write (replaced atomically).
        #[arg(long)]
        output: PathBuf,
        /// Keep only hashes seen at least this many times (the list's COUNT), for a smaller filter.
        #[arg(long, default_value_t = 1)]
        min_count: u64,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// An AWS WAF (wafv2) web ACL or rule group, as `aws wafv2 get-web-acl` / `get-rule-group` print it.
    AwsWaf {
        /// The JSON file.
        file: PathBuf,
        /// A rule group imported separately: references to it become `group:` rules (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log);
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Schema => {
            let schema = schemars::schema_for!(config::file::FileConfig);
            match serde_json::to_string_pretty(&schema) {
                Ok(s) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Serve {
            config,
            no_watch,
            worker_threads,
        } => {
            let opts = authward::proxy::server::ServeOptions {
                config_path: config,
                sources: Arc::new(config::FsSources),
                watch_files: !no_watch,
                on_ready: None,
            };
            let rt = match worker_threads {
                Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
                Some(n) => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n.into())
                    .enable_all()
                    .build(),
                None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
            };
            match rt {
                Ok(rt) => run_on(rt, async move {
                    authward::proxy::server::run(opts, shutdown_signal()).await
                }),
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Import {
            from: ImportFrom::AwsWaf { file, groups },
        } => {
            let json = match std::fs::read_to_string(&file) {
                Ok(j) => j,
                Err(e) => return fail(&format!("{}: {e}", file.display())),
            };
            match authward::waf::import::aws_waf_with_groups(&json, &groups) {
                Ok(out) => {
                    print!("{}", out.yaml);
                    for u in &out.unconverted {
                        eprintln!("not converted: {u}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&format!("{}: {e}", file.display())),
            }
        }
        Command::Test { files } => run_async(async move {
            let mut out = String::new();
            let ok = authward::ruletest::run_files(&files, &mut out).await;
            print!("{out}");
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("some rule tests failed"))
            }
        }),
        Command::Explain { config, request } => run_async(async move {
            let out = authward::ruletest::explain(&config, &request)
                .await
                .map_err(anyhow::Error::msg)?;
            print!("{out}");
            Ok(())
        }),
        Command::Demo(opts) => run_async(async move { authward::demo::run(opts, shutdown_signal()).await }),
        Command::Breach {
            command:
                BreachCommand::Build {
                    input,
                    output,
                    min_count,
                },
        } => breach_build(&input, &output, min_count),
    }
}

/// `authward breach build`: progress on stderr every million lines, one summary line on stdout.
fn breach_build(input: &Path, output: &Path, min_count: u64) -> ExitCode {
    let started = Instant::now();
    let progress = |lines: u64| {
        eprintln!("{lines} lines read ({:.1} s)", started.elapsed().as_secs_f64());
    };
    let result = if input == Path::new("-") {
        BreachFilter::build_min_count(io::stdin().lock(), output, min_count, progress)
    } else {
        match File::open(input) {
            Ok(file) => BreachFilter::build_min_count(
                BufReader::with_capacity(1 << 20, file),
                output,
                min_count,
                progress,
            ),
            Err(e) => return fail(&format!("{}: {e}", input.display())),
        }
    };
    match result {
        Ok(stats) => {
            println!(
                "{}: {} keys, {} bytes, {:.1} s ({} lines, {} hashes, {} under --min-count)",
                output.display(),
                stats.keys,
                stats.bytes,
                started.elapsed().as_secs_f64(),
                stats.lines,
                stats.hashes,
                stats.below_min_count,
            );
            ExitCode::SUCCESS
        }
        Err(e @ (BreachError::Read(_) | BreachError::Malformed { .. })) => {
            fail(&format!("{}: {e}", input.display()))
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match config::load(f, Mode::Check) {
            Ok(_) => println!("{}: ok", f.display()),
            Err(errors) => {
                ok = false;
                println!("{errors}");
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => run_on(rt, fut),
        Err(e) => fail(&e.to_string()),
    }
}

fn run_on(
    rt: tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("authward: {message}");
    ExitCode::FAILURE
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
