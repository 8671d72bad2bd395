//! `occoder clients`: register, list, remove and rotate API clients in the
//! data directory's `clients.json`. A running server reloads the file when
//! it changes, so changes take effect on the next request.

use std::path::PathBuf;
use std::process::ExitCode;

use occoder_auth::{ClientRegistry, Role};

#[derive(clap::Args)]
pub struct ClientsArgs {
    /// Data directory of the server [default: occoder-data].
    #[arg(long, env = "OCCODER_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(clap::Subcommand)]
enum ClientsCommand {
    /// Register a client and print its id and secret. The secret is shown
    /// only here.
    Add {
        /// Name of the client, for operators, such as an agency or a form.
        #[arg(long)]
        name: String,
        /// `public` (synchronous coding) or `partner` (also bulk coding).
        #[arg(long, value_parser = ["public", "partner"])]
        role: String,
        /// Print {"client_id", "client_secret", "role"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the registered clients, without secrets.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove a client. Its tokens stop working at once.
    Remove {
        /// Client id, such as occ-3f9a0c1d2b4e5f60.
        id: String,
    },
    /// Replace a client's secret and print the new one. Tokens issued with
    /// the old secret stop working at once.
    RotateSecret {
        /// Client id, such as occ-3f9a0c1d2b4e5f60.
        id: String,
    },
}

pub fn run(args: ClientsArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(|| PathBuf::from(crate::server::config::DEFAULT_DATA_DIR));
    let registry = ClientRegistry::open(&data_dir)?;

    match args.command {
        ClientsCommand::Add { name, role, json } => {
            let role: Role = role.parse()?;
            let client = registry.add(&name, role)?;
            if json {
                let output = serde_json::json!({
                    "client_id": client.client_id,
                    "client_secret": client.secret.expose(),
                    "role": role.as_str(),
                });
                println!("{output}");
            } else {
                println!("client_id: {}", client.client_id);
                println!("client_secret: {}", client.secret.expose());
                println!("role: {role}");
                eprintln!("Store the secret now: it cannot be shown again.");
            }
        }
        ClientsCommand::List { json } => {
            let clients = registry.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&clients)?);
            } else if clients.is_empty() {
                println!("no clients in {}", registry.path().display());
            } else {
                for client in clients {
                    println!(
                        "{}  {:<7}  created {}  secret generation {}  {}",
                        client.id,
                        client.role,
                        client.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        client.secret_generation,
                        client.name
                    );
                }
            }
        }
        ClientsCommand::Remove { id } => {
            let removed = registry.remove(&id)?;
            println!("removed {} ({})", removed.id, removed.name);
        }
        ClientsCommand::RotateSecret { id } => {
            let secret = registry.rotate_secret(&id)?;
            println!("client_id: {id}");
            println!("client_secret: {}", secret.expose());
            eprintln!("Store the secret now: it cannot be shown again. Tokens issued before now are revoked.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
