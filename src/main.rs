//! The `intake` command: `serve`, `migrate`, `admin …`. It only starts things; the
//! library holds the code.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use intake::app::{self, Application};
use intake::config::Settings;
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
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user; prints `{"id": …, "email": …}`.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: String,
        #[arg(long, value_enum, default_value = "internal")]
        account_type: AccountType,
    },
    /// Create an Event History API key; prints exactly `{"api_key": "…"}`.
    CreateApiKey {
        /// What the key is for (several keys may share a label).
        #[arg(long)]
        label: String,
    },
    /// Revoke every Event History API key with this label; prints `{"revoked": n}`.
    /// Running servers stop accepting them within `history_cache_ttl_secs`.
    RevokeApiKey {
        #[arg(long)]
        label: String,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("INTAKE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_config=warn,aws_smithy_runtime=warn")
    });
    let json = std::env::var("INTAKE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { only } => {
            let app = Application::build(settings).await?.serve_only(only);
            app.run_until(app::shutdown_signal()).await
        }
        Command::Migrate => {
            app::connect_database(&settings).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Admin { command } => match command {
            AdminCommand::CreateUser {
                email,
                password,
                account_type,
            } => {
                let email = email.trim().to_string();
                if email.is_empty() || !email.contains('@') {
                    anyhow::bail!("--email must be an e-mail address");
                }
                if password.len() < 8 {
                    anyhow::bail!("--password must be at least 8 characters");
                }
                let db = app::connect_database(&settings).await?;
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
                Ok(())
            }
            AdminCommand::CreateApiKey { label } => {
                let label = label.trim();
                if label.is_empty() {
                    anyhow::bail!("--label must not be blank");
                }
                let db = app::connect_database(&settings).await?;
                let pepper = app::history_pepper(&settings)?;
                let generated = intake::history::keys::generate(&pepper);
                db.create_api_key(&generated.id, label, &generated.hash)
                    .await
                    .context("storing the API key")?;
                println!("{}", serde_json::json!({ "api_key": generated.key }));
                Ok(())
            }
            AdminCommand::RevokeApiKey { label } => {
                let db = app::connect_database(&settings).await?;
                let revoked = db
                    .revoke_api_keys(label.trim())
                    .await
                    .context("revoking API keys")?;
                println!("{}", serde_json::json!({ "revoked": revoked }));
                Ok(())
            }
        },
    }
}
