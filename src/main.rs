//! The `intake` command: `serve`, `migrate`, `admin …`, and the `upload` client. It
//! only starts things; the library holds the code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use intake::app::{self, Application};
use intake::config::{ConfigError, LogFormat, LogSettings, Settings};
use intake::domain::AccountType;
use intake::http::Routes;

#[derive(Parser)]
#[command(
    name = "intake",
    version,
    about = "Takes files into a records platform safely and fast."
)]
struct Cli {
    /// Configuration file (default: ./intake.toml when present).
    #[arg(long, global = true, env = "INTAKE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Serve only these routes: `api` (records, uploads, upload socket) or
        /// `history` (the Event History API); health checks are always served.
        #[arg(long, value_enum, default_value = "all")]
        only: Routes,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Administrative tasks.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Upload a ZIP archive to a running intake: one record per file in it.
    ///
    /// Exits 0 with the records created, 1 with the server's error code and text
    /// (`--json`: one JSON object on stdout either way), 2 on bad usage.
    Upload(UploadArgs),
    /// Work with ZIP archives locally (no server, no database).
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Check archives with the server's own validator (default limits), inflating
    /// every file: lists each accepted file (size, SHA-256, name) or the refusal's
    /// code and message. Exits 0 when all are accepted, 1 when any is refused.
    Check {
        /// The archives to check.
        #[arg(required = true, num_args = 1.., value_name = "FILE")]
        files: Vec<PathBuf>,
        /// One JSON array on stdout: `{"result": "accepted", "file", "entries":
        /// [{"name", "size", "sha256"}]}` or `{"result": "refused", "file",
        /// "error_code", "message"}` per archive.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct UploadArgs {
    /// The ZIP archives to upload, each as its own upload (one after another).
    #[arg(required = true, num_args = 1.., value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Base URL of the intake server; without a scheme, `http://` is meant
    /// (`--server 127.0.0.1:8080`).
    #[arg(long, env = "INTAKE_SERVER", default_value = "http://127.0.0.1:8080", value_parser = server_url)]
    server: url::Url,
    /// Id of the object class the records are created in.
    #[arg(long = "class", value_name = "ID")]
    class: i64,
    /// Id of the class's document field that receives each file.
    #[arg(long = "field", value_name = "ID")]
    field: i64,
    /// E-mail to sign in with.
    #[arg(long, env = "INTAKE_EMAIL")]
    email: Option<String>,
    /// Password to sign in with (prefer the environment variable).
    #[arg(long, env = "INTAKE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// An access token instead of e-mail and password (used when given).
    #[arg(long, env = "INTAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Parts sent at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    parallel: u16,
    /// Print one JSON object on stdout and no progress.
    #[arg(long)]
    json: bool,
    /// Do not run the server's archive validator on the file before sending it.
    #[arg(long)]
    no_check: bool,
    /// Where resume state is kept (default: $XDG_STATE_HOME/intake, else
    /// ~/.local/state/intake). A rerun of an interrupted command resumes from it.
    #[arg(long, value_name = "DIR", env = "INTAKE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Forget the saved state of an interrupted upload of this file and start over.
    #[arg(long)]
    fresh: bool,
    /// Part size in MiB for multipart uploads (default: the server's, 16).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(5..=5120))]
    part_size: Option<u64>,
    /// Do not hash the parts (CRC32C) to have the store refuse corrupted ones.
    #[arg(long)]
    no_checksums: bool,
}

/// `--server`: an http(s) URL, or `host:port` meaning `http://host:port`.
fn server_url(text: &str) -> Result<url::Url, String> {
    let text = text.trim();
    let full = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    match url::Url::parse(&full) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(url),
        Ok(url) => Err(format!(
            "{text:?} is not an http:// or https:// address (scheme {:?})",
            url.scheme()
        )),
        Err(e) => Err(format!(
            "{text:?} is not a server address ({e}); write e.g. http://127.0.0.1:8080"
        )),
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user; prints `{"id": …, "email": …}`.
    CreateUser {
        #[arg(long)]
        email: String,
        /// The password (at least 8 characters). Better left out: then it is asked
        /// for at the terminal (twice), or read as one line from standard input when
        /// that is not a terminal (`… < password.txt`), and stays out of shell history.
        #[arg(long)]
        password: Option<String>,
        #[arg(long, value_enum, default_value = "internal")]
        account_type: AccountType,
    },
    /// List every user; prints a JSON array of `{"id", "email", "account_type",
    /// "is_active", "created_at"}` (`created_at`: epoch milliseconds).
    ListUsers,
    /// Set a user's password; prints `{"id": …, "email": …}`. The password is
    /// asked for like `create-user`'s.
    SetPassword {
        #[arg(long)]
        email: String,
        /// The new password; better left out (see `create-user`).
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete a user; prints `{"id": …, "email": …, "result": "deleted"}`. A user
    /// who created classes, uploads or records is kept for their history and
    /// deactivated instead (`"result": "deactivated"`): no log-in, tokens refused.
    DeleteUser {
        #[arg(long)]
        email: String,
    },
    /// Create an Event History API key; prints exactly `{"api_key": "…"}`.
    CreateApiKey {
        /// What the key is for (several keys may share a label).
        #[arg(long)]
        label: String,
    },
    /// Revoke every Event History API key with this label; prints `{"revoked": n}`.
    /// Running servers stop accepting them within `history_cache_ttl`.
    RevokeApiKey {
        #[arg(long)]
        label: String,
    },
}

/// The password for `email`: the argument, else asked at the terminal (twice), else
/// one line of standard input; at least 8 characters.
fn password_for(email: &str, given: Option<String>) -> anyhow::Result<String> {
    let password = match given {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password(format!("Password for {email}: "))
                .context("reading the password")?;
            let again = rpassword::prompt_password("Again: ").context("reading the password")?;
            if first != again {
                anyhow::bail!("the two passwords differ; nothing was changed");
            }
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if password.chars().count() < 8 {
        anyhow::bail!("the password must be at least 8 characters");
    }
    Ok(password)
}

/// `intake admin …`.
async fn admin(settings: &Settings, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser {
            email,
            password,
            account_type,
        } => {
            let email = email.trim().to_string();
            if email.is_empty() || !email.contains('@') {
                anyhow::bail!("--email must be an e-mail address");
            }
            let password = password_for(&email, password)?;
            let db = app::connect_database(settings).await?;
            let hash = intake::auth::hash_password(&password)?;
            let user = db
                .create_user(&email, &hash, account_type)
                .await
                .map_err(|e| {
                    if intake::db::is_unique_violation(&e) {
                        anyhow::anyhow!("a user with e-mail {email} already exists")
                    } else {
                        anyhow::Error::new(e)
                    }
                })
                .context("creating the user")?;
            println!(
                "{}",
                serde_json::json!({ "id": user.id, "email": user.email })
            );
        }
        AdminCommand::ListUsers => {
            let db = app::connect_database(settings).await?;
            let users = db.list_users().await.context("listing users")?;
            println!("{}", serde_json::to_string(&users)?);
        }
        AdminCommand::SetPassword { email, password } => {
            let email = email.trim().to_string();
            let db = app::connect_database(settings).await?;
            let Some(user) = db.user_by_email(&email).await.context("finding the user")? else {
                anyhow::bail!("no user with e-mail {email}");
            };
            let password = password_for(&email, password)?;
            let hash = intake::auth::hash_password(&password)?;
            db.set_password_hash(&email, &hash)
                .await
                .context("setting the password")?;
            println!(
                "{}",
                serde_json::json!({ "id": user.user.id, "email": user.user.email })
            );
        }
        AdminCommand::DeleteUser { email } => {
            let email = email.trim().to_string();
            let db = app::connect_database(settings).await?;
            let Some((id, result)) = db.delete_user(&email).await.context("deleting the user")?
            else {
                anyhow::bail!("no user with e-mail {email}");
            };
            println!(
                "{}",
                serde_json::json!({ "id": id, "email": email, "result": result })
            );
        }
        AdminCommand::CreateApiKey { label } => {
            let label = label.trim();
            if label.is_empty() {
                anyhow::bail!("--label must not be blank");
            }
            let db = app::connect_database(settings).await?;
            let pepper = app::history_pepper(settings)?;
            let generated = intake::history::keys::generate(&pepper);
            db.create_api_key(&generated.id, label, &generated.hash)
                .await
                .context("storing the API key")?;
            println!("{}", serde_json::json!({ "api_key": generated.key }));
        }
        AdminCommand::RevokeApiKey { label } => {
            let db = app::connect_database(settings).await?;
            let revoked = db
                .revoke_api_keys(label.trim())
                .await
                .context("revoking API keys")?;
            println!("{}", serde_json::json!({ "revoked": revoked }));
        }
    }
    Ok(())
}

/// Logging as `log` says; colours only when stderr is a terminal and `NO_COLOR` is
/// unset (a log file gets no escape codes).
fn init_tracing(log: &LogSettings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|e| {
        eprintln!(
            "warning: INTAKE_LOG={:?} is not a log filter ({e}); using info",
            log.filter
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}

/// `intake archive check`: prints each archive's report; exit 1 if any is refused.
fn archive_check(files: &[PathBuf], json: bool) -> anyhow::Result<()> {
    use intake::client::check::{CheckReport, inspect};
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let reports: Vec<CheckReport> = files.iter().map(|f| inspect(f, scratch.path())).collect();
    if json {
        println!("{}", serde_json::to_string(&reports)?);
    } else {
        for report in &reports {
            match report {
                CheckReport::Accepted { file, entries } => {
                    println!("{file}: accepted, {} files", entries.len());
                    for e in entries {
                        println!("  {:>12}  {}  {}", e.size, e.sha256, e.name);
                    }
                }
                CheckReport::Refused {
                    file,
                    error_code,
                    message,
                } => println!("{file}: refused, {error_code}: {message}"),
            }
        }
    }
    let refused = reports
        .iter()
        .any(|r| matches!(r, CheckReport::Refused { .. }));
    std::process::exit(i32::from(refused));
}

/// `intake upload`: runs the client and exits with its status.
async fn upload(args: UploadArgs) -> ! {
    use intake::client::{self, Credentials, Progress, UploadOptions};
    use secrecy::SecretString;
    let credentials = match (args.token, args.email, args.password) {
        (Some(t), _, _) => Credentials::Token(SecretString::from(t)),
        (None, Some(email), Some(password)) => Credentials::Password {
            email,
            password: SecretString::from(password),
        },
        _ => {
            eprintln!(
                "error: sign in with --email and --password (or INTAKE_EMAIL and INTAKE_PASSWORD), or --token (INTAKE_TOKEN)"
            );
            std::process::exit(2);
        }
    };
    let many = args.files.len() > 1;
    let mut results = Vec::with_capacity(args.files.len());
    for (i, file) in args.files.iter().enumerate() {
        let mut opts = UploadOptions::new(
            args.server.clone(),
            credentials.clone(),
            args.class,
            args.field,
            file.clone(),
        );
        opts.parallel = args.parallel.into();
        opts.check = !args.no_check;
        opts.state_dir = args.state_dir.clone().or_else(client::state::default_dir);
        opts.fresh = args.fresh;
        opts.checksums = !args.no_checksums;
        opts.part_size = args.part_size.map(|m| m * 1024 * 1024);
        let state_file = opts.state_dir.as_ref().map(|dir| {
            client::state::StateFile::new(dir, opts.server.as_str(), opts.class, opts.field, file)
        });
        let label = if many {
            file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        } else {
            "upload".to_string()
        };
        let progress: Arc<dyn Progress> = if args.json {
            Arc::new(client::Silent)
        } else if std::io::stderr().is_terminal() {
            Arc::new(client::Bars::named(&label))
        } else {
            if many {
                eprintln!("{}:", file.display());
            }
            Arc::new(client::Plain)
        };
        let result = tokio::select! {
            r = client::upload(&opts, progress) => r,
            _ = tokio::signal::ctrl_c() => {
                interrupted(state_file.as_ref(), &args.files[i..], many, args.json)
            }
        };
        if !many {
            let code = i32::from(result.is_err());
            if args.json {
                println!("{}", client::report::json_of(&result));
            } else {
                match &result {
                    Ok(done) => client::report::success_lines(done)
                        .iter()
                        .for_each(|l| println!("{l}")),
                    Err(e) => client::report::error_lines(e)
                        .iter()
                        .for_each(|l| eprintln!("{l}")),
                }
            }
            std::process::exit(code)
        }
        if !args.json
            && let Err(e) = &result
        {
            for l in client::report::error_lines(e) {
                eprintln!("{}: {l}", file.display());
            }
        }
        results.push((file.clone(), result));
    }
    let all_ok = results.iter().all(|(_, r)| r.is_ok());
    if args.json {
        let uploads: Vec<serde_json::Value> = results
            .iter()
            .map(|(file, r)| {
                let mut v = client::report::json_of(r);
                v["file"] = file.display().to_string().into();
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "ok": all_ok, "uploads": uploads })
        );
    } else {
        print!("{}", client::report::summary_table(&results));
    }
    std::process::exit(if all_ok { 0 } else { 1 })
}

/// Ctrl-C: says how to resume (the parts stored are kept) and exits 130. Of
/// several archives, the ones already uploaded are not named again: rerunning them
/// would upload them a second time.
fn interrupted(
    state_file: Option<&intake::client::state::StateFile>,
    remaining: &[PathBuf],
    many: bool,
    json: bool,
) -> ! {
    let saved = state_file.filter(|f| f.path().exists());
    let mut hint = match saved {
        Some(f) => format!(
            "Interrupted; the parts stored so far are kept. Run the same command again to resume \
             (state: {}), or add --fresh to start over.",
            f.path().display()
        ),
        None => "Interrupted before anything was stored; run the same command again.".into(),
    };
    if many {
        let names: Vec<String> = remaining.iter().map(|p| p.display().to_string()).collect();
        hint.push_str(&format!(
            " The archives before it are uploaded; to go on, name only these: {}",
            names.join(" ")
        ));
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ok": false,
                "error_code": "ERR_INTERRUPTED",
                "detail": hint,
                "state_file": saved.map(|f| f.path().display().to_string()),
                "remaining": remaining.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            })
        );
    } else {
        eprintln!("\n{hint}");
    }
    std::process::exit(130)
}

/// The error on one line, its causes joined with ": " (never a backtrace, whatever
/// RUST_BACKTRACE says: these are messages for a person, not crashes).
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            // A configuration that does not load is a usage error (like clap's).
            let code = if e.is::<ConfigError>() { 2 } else { 1 };
            // Exit now: background tasks (the embedded S3 endpoint, a pool still
            // connecting) must not hold the process up.
            std::process::exit(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The client needs no server settings (nor an intake.toml that parses).
    if matches!(cli.command, Command::Upload(_) | Command::Archive { .. }) {
        init_tracing(&LogSettings::from_env());
    }
    let command = match cli.command {
        Command::Upload(args) => upload(args).await,
        Command::Archive {
            command: ArchiveCommand::Check { files, json },
        } => return archive_check(&files, json),
        other => other,
    };
    let (mut settings, warnings) = Settings::load_with_warnings(cli.config.as_deref())?;
    init_tracing(&settings.log);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    // `serve`, `migrate` and `admin` resolve the data dir alike (the setting, else
    // ./intake-data of the working directory) and say which one they use, so that
    // an admin command run elsewhere does not silently use a second one.
    let data_dir = &mut settings.server.data_dir;
    if let Ok(absolute) = std::path::absolute(&*data_dir) {
        *data_dir = absolute;
    }
    let is_new = !data_dir.exists();
    match &command {
        Command::Serve { .. } => {
            tracing::info!(data_dir = %data_dir.display(), new = is_new, "data directory");
        }
        _ if is_new => eprintln!(
            "intake: data directory {} (INTAKE_DATA_DIR) does not exist yet; creating it. If `intake serve` runs elsewhere, run this there or set INTAKE_DATA_DIR.",
            data_dir.display()
        ),
        _ => eprintln!("intake: data directory {}", data_dir.display()),
    }
    match command {
        Command::Upload(_) | Command::Archive { .. } => unreachable!("handled above"),
        Command::Serve { only } => {
            let app = Application::build(settings).await?.serve_only(only);
            app.run_until(app::shutdown_signal()).await
        }
        Command::Migrate => {
            app::connect_database(&settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Admin { command } => admin(&settings, command).await,
    }
}
