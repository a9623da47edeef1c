//! A client for Keyport's HTTP API: what a Rust bot needs to read a token that is valid now,
//! and what the `keyport` command line builds on to manage connections and authorize tokens.
//!
//! ```no_run
//! # async fn example() -> Result<(), keyport_client::ClientError> {
//! use keyport_client::{Client, Owner};
//! use secrecy::ExposeSecret;
//!
//! let keyport = Client::new("https://keyport.example.com", std::env::var("KEYPORT_TOKEN").unwrap().into())?;
//! let token = keyport.token_by_name("crm", Owner::Shared, Some(300)).await?;
//! let header = format!("Bearer {}", token.access_token.expose_secret());
//! # let _ = header; Ok(())
//! # }
//! ```

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

mod error;
mod server;
mod wire;

pub use error::ClientError;
pub use server::server_url;
pub use wire::{
    AccessToken, Authorization, Completed, Deletion, Disconnected, Owner, UsableConnection,
};

/// How long one request may take: a token read can wait behind a refresh in progress (the
/// server bounds that by its lease and its provider timeout, 30 s and 15 s by default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A caller of one Keyport installation, with one bearer token.
pub struct Client {
    base: Url,
    bearer: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the Keyport at `server` (https, or http to this machine only: the bearer
    /// token must not cross a network in the clear).
    pub fn new(server: &str, bearer: SecretString) -> Result<Client, ClientError> {
        let base = server_url(server)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("keyport-client/", env!("CARGO_PKG_VERSION")))
            .timeout(REQUEST_TIMEOUT)
            // Keyport's API never redirects; a redirect is nothing to follow with a bearer.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Unreachable {
                server: base.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Client { base, bearer, http })
    }

    pub fn server(&self) -> &Url {
        &self.base
    }

    /// The connections the caller can use (every one, for an administrator).
    pub async fn my_connections(&self) -> Result<Vec<UsableConnection>, ClientError> {
        let mine: wire::MyConnections = self.get("/me/connections", &[]).await?;
        Ok(mine.connections)
    }

    /// The connection the caller can use named `name` (in any letter case, as names are
    /// unique that way), or with that id.
    pub async fn find(&self, name: &str) -> Result<UsableConnection, ClientError> {
        let connections = self.my_connections().await?;
        let exact = connections
            .iter()
            .position(|c| c.name == name || c.id == name);
        let folded = || {
            connections
                .iter()
                .position(|c| c.name.to_lowercase() == name.to_lowercase())
        };
        match exact.or_else(folded) {
            Some(index) => Ok(connections.into_iter().nth(index).expect("found")),
            None => Err(ClientError::UnknownConnection(name.to_owned())),
        }
    }

    /// Every connection, all pages (administrators).
    pub async fn list_connections(&self) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "100".to_owned())];
            if let Some(cursor) = cursor.take() {
                query.push(("cursor", cursor));
            }
            let page: wire::ConnectionPage = self.get("/connections", &query).await?;
            all.extend(page.connections);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One connection as the API describes it (administrators).
    pub async fn connection(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/connections/{}", segment(id)), &[])
            .await
    }

    /// Creates a connection from its JSON description (administrators).
    pub async fn create_connection(
        &self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let request = self.request(Method::POST, "/connections", &[]).json(body);
        self.answer(request).await
    }

    /// Every connection's definition (administrators); with `recipient`, their secrets and
    /// tokens too, encrypted to that age recipient.
    pub async fn export_connections(
        &self,
        recipient: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let query: Vec<(&str, String)> = match recipient {
            Some(recipient) => vec![
                ("with_secrets", "true".to_owned()),
                ("recipient", recipient.to_owned()),
            ],
            None => Vec::new(),
        };
        self.get("/connections/export", &query).await
    }

    /// Imports a document of connections (administrators): its plan, applied unless
    /// `dry_run`. A plan with conflicts comes back too (as it is, with `applied: false`),
    /// not as an error.
    pub async fn import_connections(
        &self,
        document: &serde_json::Value,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClientError> {
        let query = [("dry_run", dry_run.to_string())];
        let request = self
            .request(Method::POST, "/connections/import", &query)
            .json(document);
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.base.to_string(),
            reason: error::transport_reason(&e),
        })?;
        let status = response.status();
        if status.is_success() {
            return self.parse(response).await;
        }
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::CONFLICT
            && let Ok(plan) = serde_json::from_str::<serde_json::Value>(&text)
            && plan.get("connections").is_some()
        {
            return Ok(plan);
        }
        Err(error::from_answer(status, &text))
    }

    /// Deletes a connection: its tokens are revoked, in this request or by the refresher, or
    /// all of them by the refresh workers.
    pub async fn delete_connection(&self, id: &str) -> Result<Deletion, ClientError> {
        let path = format!("/connections/{}", segment(id));
        let response = self.send(self.request(Method::DELETE, &path, &[])).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Deletion::Complete);
        }
        let continuing: wire::DeletionContinuing = self.parse(response).await?;
        Ok(match continuing.tokens_revoked {
            Some(tokens_revoked) if continuing.status != "queued" => Deletion::Continuing {
                tokens_revoked,
                message: continuing.message,
            },
            _ => Deletion::Queued {
                message: continuing.message,
            },
        })
    }

    /// Starts an authorization of the connection's `owner` token; `redirect_after` is where
    /// the browser goes once Keyport holds the grant.
    pub async fn start_authorization(
        &self,
        id: &str,
        owner: Owner,
        redirect_after: Option<&str>,
    ) -> Result<Authorization, ClientError> {
        let path = format!("/connections/{}/authorize", segment(id));
        let body = serde_json::json!({"owner": owner.as_str(), "redirect_after": redirect_after});
        self.answer(self.request(Method::POST, &path, &[]).json(&body))
            .await
    }

    /// Confirms an authorization this caller started, with the completion value the callback
    /// handed back: only then is the grant placed.
    pub async fn complete_authorization(
        &self,
        completion: &SecretString,
    ) -> Result<Completed, ClientError> {
        let body = serde_json::json!({"completion": completion.expose_secret()});
        self.answer(
            self.request(Method::POST, "/oauth/complete", &[])
                .json(&body),
        )
        .await
    }

    /// A token of the connection `id` valid now, and for at least `min_valid_seconds` if the
    /// provider allows (see [`AccessToken::min_valid_met`]).
    pub async fn token(
        &self,
        id: &str,
        owner: Owner,
        min_valid_seconds: Option<u64>,
    ) -> Result<AccessToken, ClientError> {
        let path = format!("/connections/{}/token", segment(id));
        let mut query = vec![("owner", owner.as_str().to_owned())];
        if let Some(seconds) = min_valid_seconds {
            query.push(("min_valid_seconds", seconds.to_string()));
        }
        self.get(&path, &query).await
    }

    /// [`Client::token`] of the connection named `name`.
    pub async fn token_by_name(
        &self,
        name: &str,
        owner: Owner,
        min_valid_seconds: Option<u64>,
    ) -> Result<AccessToken, ClientError> {
        let connection = self.find(name).await?;
        self.token(&connection.id, owner, min_valid_seconds).await
    }

    /// Resets the connection's shared client-credentials token (administrators): revokes it at
    /// the provider (where it can) and returns the new one Keyport requested and stored.
    pub async fn reset_token(&self, id: &str) -> Result<AccessToken, ClientError> {
        let path = format!("/connections/{}/token/reset", segment(id));
        self.answer(self.request(Method::POST, &path, &[])).await
    }

    /// Revokes the token at the provider (where it can) and deletes it.
    pub async fn disconnect(&self, id: &str, owner: Owner) -> Result<Disconnected, ClientError> {
        let path = format!("/connections/{}/token", segment(id));
        let query = [("owner", owner.as_str().to_owned())];
        self.answer(self.request(Method::DELETE, &path, &query))
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.answer(self.request(Method::GET, path, query)).await
    }

    fn request(&self, method: Method, path: &str, query: &[(&str, String)]) -> RequestBuilder {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.http
            .request(method, url)
            .bearer_auth(self.bearer.expose_secret())
    }

    async fn answer<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ClientError> {
        let response = self.send(request).await?;
        self.parse(response).await
    }

    /// Sends, and turns an error answer into [`ClientError::Api`].
    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.base.to_string(),
            reason: error::transport_reason(&e),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        Err(error::from_answer(status, &text))
    }

    async fn parse<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::BadAnswer(format!("the answer was cut off: {e}")))?;
        // The error names the shape, never the text: a token answer holds a token.
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::BadAnswer(format!(
                "not the JSON this client expects (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
    }
}

/// A connection id as one path segment (ids are URL-safe; a name passed by mistake stays in
/// its segment).
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
