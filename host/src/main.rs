//! The `syncbase` binary: parse the CLI, set up tracing, run the command.

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;

use syncbase::config::{Cli, Command, Config, LogFormat, SuperuserCommand};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The server logs at info; the CLI's commands print their own results, so only warnings.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNCBASE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Colour codes only for a person at a terminal: not in files, pipes or journald.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let config = Config::from_args(&args)?;
                let server = syncbase::Server::bind(config).await?;
                println!("Server started at http://{}", server.local_addr());
                if !syncbase::superuser::exists(server.store()).await.unwrap_or(true) {
                    eprintln!(
                        "No superuser yet: create one with `syncbase superuser upsert EMAIL PASSWORD --dir {}`",
                        args.dir.display()
                    );
                }
                server.serve(syncbase::shutdown::signal()).await?;
                Ok(())
            }
            Command::Sync(args) => {
                let out = syncbase::admin::sync(&args.remote, &args.action).await?;
                println!("{out}");
                Ok(())
            }
            Command::Plugin(args) => {
                let out = syncbase::admin::plugin(&args.action).await?;
                println!("{out}");
                Ok(())
            }
            Command::Superuser {
                action:
                    SuperuserCommand::Upsert {
                        email,
                        password,
                        dir,
                    },
            } => {
                let created = syncbase::superuser::upsert(&dir, &email, &password)
                    .await
                    .context("superuser upsert failed")?;
                println!(
                    "Successfully {} superuser {email}.",
                    if created { "created" } else { "updated" }
                );
                Ok(())
            }
        }
    })
}
