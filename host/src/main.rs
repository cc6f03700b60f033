//! The `syncbase` binary: parse the CLI, set up tracing, run the command.

use std::io::Write as _;

use anyhow::Context;
use clap::Parser;
use std::io::IsTerminal;

use syncbase::config::{
    Cli, Command, Config, ExportCommand, ImportCommand, LogFormat, SuperuserCommand,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Becomes the embedded nats-server: no runtime, no logging of its own.
    if let Command::NatsExec { parent, program } = &cli.command {
        return Err(syncbase::nats::exec_with_parent_death(*parent, program).into());
    }
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
                let addr = server.local_addr();
                println!("Server started at http://{addr}");
                // Links must be reachable from this machine's browser: a wildcard bind
                // address becomes loopback.
                let mut shown = addr;
                if shown.ip().is_unspecified() {
                    shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                // Everything after the first line may meet a closed pipe (a supervisor that
                // read only the address): never let that kill the server.
                let mut out = std::io::stdout();
                let _ = writeln!(out, "├─ REST API:  http://{shown}/api/");
                let _ = writeln!(out, "└─ Dashboard: http://{shown}/_/");
                match syncbase::superuser::install_link(server.store(), &format!("http://{shown}"))
                    .await
                {
                    Ok(Some(link)) => {
                        let _ = writeln!(
                            out,
                            "\n(!) No superuser yet. Open this link in a browser (valid 30 minutes) to create the first one:\n{link}\n(or run: syncbase superuser upsert EMAIL PASSWORD --dir {})\n",
                            args.dir.display()
                        );
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "could not prepare the install link"),
                }
                server.serve(syncbase::shutdown::signal()).await?;
                Ok(())
            }
            Command::Sync(args) => {
                let out = syncbase::admin::sync(&args.remote, &args.action).await?;
                println!("{out}");
                Ok(())
            }
            Command::Snapshot(args) => {
                let out = syncbase::snapshot::cli::run(&args).await?;
                println!("{out}");
                Ok(())
            }
            Command::Plugin(args) => {
                let out = syncbase::admin::plugin(&args.action).await?;
                println!("{out}");
                Ok(())
            }
            Command::Import {
                source:
                    ImportCommand::Pocketbase {
                        pb_data,
                        dir,
                        force,
                        encryption_env,
                        json,
                    },
            } => {
                let opts = syncbase::pocketbase::ImportOptions {
                    pb_data,
                    dir,
                    force,
                    encryption: encryption_env
                        .as_deref()
                        .map(syncbase::pocketbase::EncryptionKey::from_env),
                    progress: !json,
                };
                let report =
                    tokio::task::spawn_blocking(move || syncbase::pocketbase::import(&opts))
                        .await?
                        .context("import failed")?;
                print_report(&report, json);
                Ok(())
            }
            Command::Export {
                target:
                    ExportCommand::Pocketbase {
                        out,
                        dir,
                        force,
                        json,
                    },
            } => {
                let opts = syncbase::pocketbase::ExportOptions {
                    dir,
                    out,
                    force,
                    progress: !json,
                };
                let report =
                    tokio::task::spawn_blocking(move || syncbase::pocketbase::export(&opts))
                        .await?
                        .context("export failed")?;
                print_report(&report, json);
                Ok(())
            }
            Command::NatsExec { .. } => unreachable!("handled before the runtime starts"),
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

/// An import's or export's report: text for people, or JSON (`--json`).
fn print_report(report: &syncbase::pocketbase::Report, json: bool) {
    if json {
        println!("{}", syncbase::pocketbase::report_json(report));
    } else {
        print!("{report}");
    }
}
