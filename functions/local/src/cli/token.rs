//! `keyport token NAME`: an access token valid now, on standard output and nothing else, for
//! `$(keyport token crm)` in scripts. `--reset` replaces a client-credentials connection's
//! shared token first (administrators).

use clap::Args;
use secrecy::ExposeSecret;
use serde_json::json;

use super::{ClientArgs, describe, owner, print_json};

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// The connection's name (or id).
    pub name: String,
    /// Your own user-specific token instead of the connection's shared one.
    #[arg(long)]
    pub user: bool,
    /// Ask for a token that stays valid at least this many seconds (Keyport refreshes it
    /// first when it would not). A warning on standard error says when the provider's
    /// lifetime cannot meet it.
    #[arg(long = "min-valid", value_name = "SECONDS")]
    pub min_valid: Option<u64>,
    /// Reset the shared token first (administrators; client-credentials connections only):
    /// Keyport revokes it at the provider (where it can) and requests a new one, printed as
    /// usual.
    #[arg(long, conflicts_with_all = ["user", "min_valid"])]
    pub reset: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: TokenArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let owner = owner(args.user);
    let token = if args.reset {
        async {
            let connection = client.find(&args.name).await?;
            client.reset_token(&connection.id).await
        }
        .await
    } else {
        client
            .token_by_name(&args.name, owner, args.min_valid)
            .await
    }
    .map_err(|e| describe(e, &args.name, owner))?;
    if !token.min_valid_met {
        let until = token
            .expires_at
            .map(|at| format!("until {}", at.to_rfc3339()))
            .unwrap_or_else(|| "for less time".to_owned());
        eprintln!(
            "keyport: warning: this token stays valid {until}, not the {} s asked",
            args.min_valid.unwrap_or_default()
        );
    }
    if args.client.json {
        print_json(&json!({
            "access_token": token.access_token.expose_secret(),
            "token_type": token.token_type,
            "expires_at": token.expires_at,
            "scope": token.scope,
            "connection_id": token.connection_id,
            "owner": token.owner,
            "extra": token.extra,
            "min_valid_met": token.min_valid_met,
        }));
    } else {
        say!("{}", token.access_token.expose_secret());
    }
    Ok(())
}
