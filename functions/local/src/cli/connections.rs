//! `keyport connections list|show|create|delete`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::Args;
use keyport_client::{Client, Deletion, Owner, UsableConnection};
use serde_json::{Value, json};

use super::{ClientArgs, describe, fields, print_json, table};

#[derive(Args, Debug, Clone)]
pub struct NamedArgs {
    /// The connection's name (or id).
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// The connection as JSON (the fields of `POST /connections`); `-` reads standard input.
    #[arg(long = "file", short = 'f', value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DeleteArgs {
    /// The connection's name (or id).
    pub name: String,
    /// Do not ask: needed when standard input is not a terminal.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

const LIST_HEADER: [&str; 8] = [
    "NAME",
    "PROVIDER",
    "GRANT",
    "STATUS",
    "SHARED TOKEN",
    "EXPIRES",
    "USER TOKENS",
    "INVITED",
];

const MINE_HEADER: [&str; 5] = ["NAME", "PROVIDER", "GRANT", "SHARED TOKEN", "YOUR TOKEN"];

pub async fn list(args: &ClientArgs) -> Result<(), String> {
    let client = args.client()?;
    match client.list_connections().await {
        Ok(connections) if args.json => {
            print_json(&json!({ "connections": connections }));
            Ok(())
        }
        Ok(connections) => {
            let rows: Vec<Vec<String>> = connections.iter().map(list_row).collect();
            say_raw!("{}", table::render(&LIST_HEADER, &rows));
            Ok(())
        }
        // Not an administrator: what this caller can use instead.
        Err(error) if error.code() == Some("forbidden") => mine(&client, args.json).await,
        Err(error) => Err(describe(error, "", Owner::Shared)),
    }
}

async fn mine(client: &Client, json: bool) -> Result<(), String> {
    let connections = client
        .my_connections()
        .await
        .map_err(|e| describe(e, "", Owner::Shared))?;
    if json {
        let listed: Vec<Value> = connections.iter().map(usable_json).collect();
        print_json(&json!({ "connections": listed }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = connections.iter().map(mine_row).collect();
    say_raw!("{}", table::render(&MINE_HEADER, &rows));
    Ok(())
}

fn usable_json(connection: &UsableConnection) -> Value {
    json!({
        "id": connection.id,
        "name": connection.name,
        "description": connection.description,
        "provider": connection.provider,
        "grant_type": connection.grant_type,
        "shared_token": connection.shared_token,
        "user_token": connection.user_token,
    })
}

fn mine_row(connection: &UsableConnection) -> Vec<String> {
    let status = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".to_owned());
    vec![
        connection.name.clone(),
        connection.provider.clone(),
        connection.grant_type.clone(),
        status(&connection.shared_token),
        status(&connection.user_token),
    ]
}

/// One connection of `GET /connections` as a table row.
fn list_row(connection: &Value) -> Vec<String> {
    let text = |pointer: &str| {
        connection
            .pointer(pointer)
            .map(fields::plain)
            .unwrap_or_else(|| "-".to_owned())
    };
    let users = match (
        connection.pointer("/token_health/user_tokens/total"),
        connection.pointer("/token_health/user_tokens/needs_attention"),
    ) {
        (Some(total), Some(attention)) if attention.as_u64().unwrap_or(0) > 0 => {
            format!("{} ({} need attention)", fields::plain(total), attention)
        }
        (Some(total), _) => fields::plain(total),
        _ => "-".to_owned(),
    };
    vec![
        text("/name"),
        text("/provider"),
        text("/grant_type"),
        text("/status"),
        text("/token_health/shared/status"),
        text("/token_health/shared/expires_at"),
        users,
        text("/invited_roles"),
    ]
}

pub async fn show(args: &NamedArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let fail = |e| describe(e, &args.name, Owner::Shared);
    let found = client.find(&args.name).await.map_err(fail)?;
    let connection = client.connection(&found.id).await.map_err(fail)?;
    if args.client.json {
        print_json(&connection);
    } else {
        say_raw!(
            "{}",
            table::render(&["FIELD", "VALUE"], &fields::rows(&connection))
        );
    }
    Ok(())
}

pub async fn create(args: &CreateArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let shown = args.file.display().to_string();
    let text = if shown == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| format!("cannot read {shown}: {e}"))?
    };
    let body: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{shown} is not JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    let created = client
        .create_connection(&body)
        .await
        .map_err(|e| describe(e, "", Owner::Shared))?;
    if args.client.json {
        print_json(&created);
        return Ok(());
    }
    let name = created["name"].as_str().unwrap_or_default();
    say!(
        "created connection {name} ({})",
        created["id"].as_str().unwrap_or_default()
    );
    if created["grant_type"]
        .as_str()
        .is_some_and(|grant| grant.starts_with("authorization_code"))
    {
        say!("next: keyport authorize {name}");
    }
    Ok(())
}

pub async fn delete(args: &DeleteArgs) -> Result<(), String> {
    let client = args.client.client()?;
    let fail = |e| describe(e, &args.name, Owner::Shared);
    let found = client.find(&args.name).await.map_err(fail)?;
    if !args.yes {
        confirm(&found.name)?;
    }
    let deletion = client.delete_connection(&found.id).await.map_err(fail)?;
    if args.client.json {
        let answer = match &deletion {
            Deletion::Complete => json!({"id": found.id, "status": "deleted"}),
            Deletion::Continuing {
                tokens_revoked,
                message,
            } => json!({
                "id": found.id, "status": "deleting",
                "tokens_revoked": tokens_revoked, "message": message,
            }),
            Deletion::Queued { message } => json!({
                "id": found.id, "status": "queued", "message": message,
            }),
        };
        print_json(&answer);
        return Ok(());
    }
    match deletion {
        Deletion::Complete => say!("deleted connection {}", found.name),
        Deletion::Continuing { message, .. } | Deletion::Queued { message } => {
            say!("deleting connection {}: {message}", found.name)
        }
    }
    Ok(())
}

/// A person types the connection's name to delete it; a script says `--yes`.
fn confirm(name: &str) -> Result<(), String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!(
            "deleting {name} revokes all of its tokens: pass --yes to delete without asking"
        ));
    }
    eprint!("Deleting {name} revokes every one of its tokens. Type its name to confirm: ");
    let _ = std::io::stderr().flush();
    let mut typed = String::new();
    stdin
        .lock()
        .read_line(&mut typed)
        .map_err(|e| format!("cannot read the confirmation: {e}"))?;
    if typed.trim() == name {
        Ok(())
    } else {
        Err("not confirmed: nothing was deleted".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_connection_shows_its_token_health() {
        let connection = json!({
            "name": "crm", "provider": "custom", "grant_type": "client_credentials",
            "status": "active", "invited_roles": ["bots", "sales"],
            "token_health": {
                "shared": {"status": "valid", "expires_at": "2026-12-02T05:00:00Z"},
                "user_tokens": {"total": 3, "needs_attention": 1},
            },
        });
        assert_eq!(
            list_row(&connection),
            [
                "crm",
                "custom",
                "client_credentials",
                "active",
                "valid",
                "2026-12-02T05:00:00Z",
                "3 (1 need attention)",
                "bots, sales"
            ]
        );
        let bare = json!({"name": "x", "invited_roles": []});
        assert_eq!(list_row(&bare)[4], "-");
        assert_eq!(list_row(&bare)[6], "-");
    }
}
