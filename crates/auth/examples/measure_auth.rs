//! Measures the costs that size the access-control defaults: argon2 hashing
//! and verification, token verification, admitting a request, and writing the
//! daily counts file.
//!
//! Run with `cargo run --release -p occoder-auth --example measure_auth`.
//! It works in a temporary directory, so the write cost is that of the
//! file system holding the temporary directory.

use std::time::{Duration, Instant};

use occoder_auth::{AccessControl, AuthConfig, Credentials, OperationClass, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = AuthConfig {
        requests_per_second: 1_000_000.0,
        burst: 1_000_000,
        daily_limit_public: u64::MAX,
        daily_limit_partner: u64::MAX,
        token_requests_per_window: 1000,
        quota_flush_every: u64::MAX,
        ..AuthConfig::default()
    };
    let access = AccessControl::open(dir.path(), config)?;

    let rounds = 10;
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..rounds {
        clients.push(access.registry().add("measure", Role::Partner)?);
    }
    report(
        "register client (argon2 hash + registry write)",
        started.elapsed(),
        rounds,
    );

    let started = Instant::now();
    let mut tokens = Vec::new();
    for client in &clients {
        let credentials = Credentials::new(client.client_id.clone(), client.secret.expose());
        tokens.push(access.issue_token(&credentials)?.token);
    }
    report("issue token (argon2 verify)", started.elapsed(), rounds);

    let rounds = 100_000;
    let started = Instant::now();
    for index in 0..rounds {
        access.verify_token(&tokens[index % tokens.len()])?;
    }
    report(
        "verify token (HMAC + registry stat)",
        started.elapsed(),
        rounds,
    );

    let principal = access.verify_token(&tokens[0])?;
    let started = Instant::now();
    for _ in 0..rounds {
        access.admit(&principal, OperationClass::Synchronous)?;
    }
    report(
        "admit request (rate + daily count, no write)",
        started.elapsed(),
        rounds,
    );

    for client_count in [1, 1000] {
        for index in 0..client_count {
            let principal = occoder_auth::Principal {
                client_id: format!("occ-{index:016x}"),
                ..principal.clone()
            };
            access.admit(&principal, OperationClass::Synchronous)?;
        }
        let rounds = 200;
        let started = Instant::now();
        for _ in 0..rounds {
            access.admit(&principal, OperationClass::Synchronous)?;
            access.flush()?;
        }
        report(
            &format!("write daily counts after adding {client_count} clients (fsync + rename)"),
            started.elapsed(),
            rounds,
        );
    }
    Ok(())
}

fn report(what: &str, elapsed: Duration, rounds: usize) {
    let each = elapsed / u32::try_from(rounds).unwrap_or(u32::MAX);
    println!("{what}: {each:?} per operation over {rounds} operations");
}
