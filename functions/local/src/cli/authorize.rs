//! `keyport authorize NAME [--user]`: starts an authorization, prints the address to open in
//! a browser, and waits for that browser to come back. Keyport's callback sends it on to a
//! listener of this command's on 127.0.0.1 (RFC 8252 §7.3, as native apps receive OAuth
//! redirects), at a path nobody else knows; the command then confirms the grant as the caller
//! (`POST /oauth/complete`), so a consent link forwarded to someone else fills nobody's slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use clap::Args;
use keyport_client::{Client, Completed, Owner};
use keyport_shared::http::notice;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::{ClientArgs, describe, owner, print_json};

#[derive(Args, Debug, Clone)]
pub struct AuthorizeArgs {
    /// The connection's name (or id).
    pub name: String,
    /// Authorize your own user-specific token (a role the connection invites) instead of the
    /// connection's shared one (administrators).
    #[arg(long)]
    pub user: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How long after the authorization's own expiry the command still waits: the person may be
/// on the provider's consent screen when it passes, and Keyport's answer says what happened.
const GRACE: Duration = Duration::from_secs(30);

pub async fn run(args: AuthorizeArgs) -> Result<(), String> {
    let client = Arc::new(args.client.client()?);
    let owner = owner(args.user);
    let fail = |e| describe(e, &args.name, owner);
    let connection = client.find(&args.name).await.map_err(fail)?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1 for the browser's return: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let secret_path = format!(
        "/keyport-cli/{}",
        hex(&keyport_shared::crypto::random_bytes::<16>())
    );
    let return_to = format!("http://127.0.0.1:{port}{secret_path}");
    let started = client
        .start_authorization(&connection.id, owner, Some(&return_to))
        .await
        .map_err(fail)?;

    let whose = match owner {
        Owner::Shared => "the shared token".to_owned(),
        Owner::User => "your own token".to_owned(),
    };
    eprintln!(
        "Open this address in a browser to authorize {whose} of {}, before {}:\n\n  {}\n",
        connection.name,
        started.expires_at.format("%H:%M:%S UTC"),
        started.authorization_url
    );
    open_browser(&started.authorization_url);
    eprintln!("Waiting for the browser to come back here (Ctrl-C to give up)…");

    let (done, outcome) = oneshot::channel();
    let state = Arc::new(Listener {
        client: client.clone(),
        connection_id: connection.id.clone(),
        done: Mutex::new(Some(done)),
    });
    let app = Router::new()
        .route(&secret_path, axum::routing::get(returned))
        .fallback(|| async { notice(StatusCode::NOT_FOUND, "Not here", "Nothing to see here.") })
        .with_state(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    let wait = (started.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        + GRACE;
    let outcome = tokio::time::timeout(wait, outcome).await;
    // The page the browser is being answered with goes out before the listener closes.
    let _ = stop.send(());
    let _ = server.await;
    let completed = match outcome {
        Ok(Ok(result)) => result.map_err(fail)?,
        Ok(Err(_)) => return Err("the browser's return was lost".to_owned()),
        Err(_) => {
            return Err(format!(
                "the authorization was not completed before it expired ({}): nothing was stored; run the command again",
                started.expires_at.format("%H:%M:%S UTC")
            ));
        }
    };
    report(&connection.name, &completed, args.client.json);
    Ok(())
}

fn report(name: &str, completed: &Completed, json: bool) {
    if json {
        print_json(&serde_json::to_value(completed).expect("serializes"));
    } else if completed.owner == "shared" {
        say!("authorized {name}: its shared token is stored");
    } else {
        say!("authorized {name}: your own token is stored");
    }
}

struct Listener {
    client: Arc<Client>,
    connection_id: String,
    done: Mutex<Option<oneshot::Sender<Result<Completed, keyport_client::ClientError>>>>,
}

/// The browser is back from Keyport's callback with the completion value: confirm it as the
/// caller, and tell the person in the browser how it went.
async fn returned(
    State(listener): State<Arc<Listener>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("keyport_status").map(String::as_str) == Some("denied") {
        return declined(&listener, &query);
    }
    let (Some(completion), Some(connection_id)) =
        (query.get("keyport_completion"), query.get("connection_id"))
    else {
        return notice(
            StatusCode::BAD_REQUEST,
            "Nothing to confirm",
            "This address expects Keyport's callback to send the browser here.",
        );
    };
    if *connection_id != listener.connection_id {
        return notice(
            StatusCode::BAD_REQUEST,
            "Another connection",
            "This authorization is for another connection; nothing was confirmed.",
        );
    }
    let Some(done) = listener.done.lock().expect("not poisoned").take() else {
        return notice(
            StatusCode::CONFLICT,
            "Already done",
            "This authorization was already confirmed or refused; see the terminal.",
        );
    };
    let completion = SecretString::from(completion.clone());
    let result = listener.client.complete_authorization(&completion).await;
    let page = match &result {
        Ok(_) => notice(
            StatusCode::OK,
            "Connected",
            "Keyport stored the token. You can close this tab and go back to the terminal.",
        ),
        Err(error) => notice(
            StatusCode::BAD_GATEWAY,
            "Not connected",
            &format!("Keyport refused to store the token: {error}"),
        ),
    };
    let _ = done.send(result);
    page
}

/// The browser is back from Keyport's callback because the provider refused (the person
/// declined): nothing was stored, and the command ends saying so instead of waiting.
fn declined(listener: &Listener, query: &HashMap<String, String>) -> Response {
    if query.get("connection_id") != Some(&listener.connection_id) {
        return notice(
            StatusCode::BAD_REQUEST,
            "Another connection",
            "This authorization is for another connection; nothing changed.",
        );
    }
    let Some(done) = listener.done.lock().expect("not poisoned").take() else {
        return notice(
            StatusCode::CONFLICT,
            "Already done",
            "This authorization was already confirmed or refused; see the terminal.",
        );
    };
    let error = query.get("error").map(String::as_str).unwrap_or("refused");
    let _ = done.send(Err(keyport_client::ClientError::Api {
        status: 400,
        code: "authorization_denied".to_owned(),
        message: format!("the provider refused the authorization ({error}): nothing was stored"),
        field: None,
    }));
    notice(
        StatusCode::OK,
        "Not connected",
        "The authorization was declined at the provider, so nothing was stored. You can close this tab and go back to the terminal.",
    )
}

/// Opens `url` with `$BROWSER` when it is set (the command, then the URL), as many command-line
/// tools do; otherwise the person opens the printed address.
fn open_browser(url: &str) {
    let Ok(browser) = std::env::var("BROWSER") else {
        return;
    };
    let mut words = browser.split_whitespace();
    let Some(program) = words.next() else {
        return;
    };
    let spawned = std::process::Command::new(program)
        .args(words)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        eprintln!("keyport: cannot run $BROWSER ({program}): {error}; open the address yourself");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (
        Arc<Listener>,
        oneshot::Receiver<Result<Completed, keyport_client::ClientError>>,
    ) {
        let (done, outcome) = oneshot::channel();
        let client = Client::new(
            "http://127.0.0.1:9",
            SecretString::from("unused".to_owned()),
        )
        .expect("a client");
        let listener = Listener {
            client: Arc::new(client),
            connection_id: "con_1".to_owned(),
            done: Mutex::new(Some(done)),
        };
        (Arc::new(listener), outcome)
    }

    fn query(pairs: &[(&str, &str)]) -> Query<HashMap<String, String>> {
        Query(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[tokio::test]
    async fn a_declined_authorization_ends_the_wait_with_the_providers_refusal() {
        let (listener, mut outcome) = listener();
        let page = returned(
            State(listener),
            query(&[
                ("keyport_status", "denied"),
                ("connection_id", "con_1"),
                ("error", "access_denied"),
            ]),
        )
        .await;
        assert_eq!(page.status(), StatusCode::OK);
        let refused = outcome
            .try_recv()
            .expect("the command hears at once")
            .expect_err("nothing was stored");
        assert_eq!(refused.code(), Some("authorization_denied"));
        assert!(refused.to_string().contains("access_denied"), "{refused}");
    }

    #[tokio::test]
    async fn a_decline_for_another_connection_changes_nothing() {
        let (listener, mut outcome) = listener();
        let page = returned(
            State(listener),
            query(&[("keyport_status", "denied"), ("connection_id", "con_2")]),
        )
        .await;
        assert_eq!(page.status(), StatusCode::BAD_REQUEST);
        assert!(outcome.try_recv().is_err(), "the command still waits");
    }
}
