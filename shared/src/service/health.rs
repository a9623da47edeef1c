//! Connections as administrators read them: each with its token health, read from token
//! metadata only. No token is opened for it (no key service call), and the work per connection
//! is bounded: one point read for the shared token, one bounded read for the others.

use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{Keyport, ServiceError};
use crate::domain::{Connection, ConnectionId, Owner, Principal, StoredToken, TokenHealth};
use crate::ports::{Page, TokenKey};

/// User tokens one summary counts; a connection with more is reported `complete: false`.
pub const HEALTH_TOKEN_LIMIT: u32 = 1000;

/// Summaries of one page computed at once: each is two store reads, and a page may hold up to
/// a thousand connections.
const HEALTH_CONCURRENCY: usize = 8;

/// A connection's place in its page, and its summary.
type Summary = (usize, Result<TokenHealth, ServiceError>);

/// A connection with its token health: the connection's own fields, and `token_health`.
#[derive(Debug, Serialize)]
pub struct AdministeredConnection {
    #[serde(flatten)]
    pub connection: Connection,
    pub token_health: TokenHealth,
}

impl AdministeredConnection {
    /// A connection just created: it cannot hold a token yet, so nothing is read.
    pub fn created(connection: Connection) -> Self {
        Self {
            connection,
            token_health: TokenHealth::without_tokens(),
        }
    }
}

impl Keyport {
    /// `connection` with its token health (administrators).
    pub async fn with_token_health(
        &self,
        principal: &Principal,
        connection: Connection,
    ) -> Result<AdministeredConnection, ServiceError> {
        self.access.require_admin(principal)?;
        let token_health = self.token_health(&connection.id).await?;
        Ok(AdministeredConnection {
            connection,
            token_health,
        })
    }

    /// Each connection of `page` with its token health, in the page's order (administrators).
    pub async fn page_with_token_health(
        self: &Arc<Self>,
        principal: &Principal,
        page: Page<Connection>,
    ) -> Result<Page<AdministeredConnection>, ServiceError> {
        self.access.require_admin(principal)?;
        let mut health: Vec<Option<TokenHealth>> = vec![None; page.items.len()];
        let mut running: JoinSet<Summary> = JoinSet::new();
        for (index, connection) in page.items.iter().enumerate() {
            if running.len() == HEALTH_CONCURRENCY {
                let finished = running.join_next().await.expect("a summary is running");
                let (done, summary) = joined(finished)?;
                health[done] = Some(summary);
            }
            let keyport = self.clone();
            let id = connection.id.clone();
            running.spawn(async move { (index, keyport.token_health(&id).await) });
        }
        while let Some(finished) = running.join_next().await {
            let (done, summary) = joined(finished)?;
            health[done] = Some(summary);
        }
        let items = page
            .items
            .into_iter()
            .zip(health)
            .map(|(connection, token_health)| AdministeredConnection {
                connection,
                token_health: token_health.expect("every summary was joined"),
            })
            .collect();
        Ok(Page {
            items,
            next: page.next,
        })
    }

    async fn token_health(&self, id: &ConnectionId) -> Result<TokenHealth, ServiceError> {
        let shared = self
            .store
            .get_token(&TokenKey {
                connection_id: id.clone(),
                owner: Owner::Shared,
            })
            .await?;
        // The shared token may be among them, and one more user token than counted tells a
        // connection at the limit (complete) from one beyond it: a full read of limit + 2
        // holds at least limit + 1 user tokens.
        let tokens = self.store.first_tokens(id, HEALTH_TOKEN_LIMIT + 2).await?;
        let (users, complete) = first_users(tokens, HEALTH_TOKEN_LIMIT as usize);
        Ok(TokenHealth::summarize(
            shared.as_ref(),
            &users,
            complete,
            Utc::now(),
        ))
    }
}

/// The first `limit` user tokens of `tokens` (read with a limit of `limit` + 2), and whether
/// they are all the connection has.
fn first_users(tokens: Vec<StoredToken>, limit: usize) -> (Vec<StoredToken>, bool) {
    let mut users: Vec<StoredToken> = tokens
        .into_iter()
        .filter(|t| t.owner != Owner::Shared)
        .collect();
    let complete = users.len() <= limit;
    users.truncate(limit);
    (users, complete)
}

/// A finished summary's index and result. The tasks are never cancelled, so a join error is a
/// panic, carried on as if the summary had run in line.
fn joined(
    finished: Result<Summary, tokio::task::JoinError>,
) -> Result<(usize, TokenHealth), ServiceError> {
    let (index, summary) = finished.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    Ok((index, summary?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Subject, TokenStatus};

    fn token(owner: Owner) -> StoredToken {
        let now = Utc::now();
        StoredToken {
            connection_id: ConnectionId::generate(),
            owner,
            status: TokenStatus::Valid,
            token_type: "Bearer".into(),
            scope: None,
            expires_at: None,
            refresh_due_at: None,
            has_refresh_token: false,
            last_error: None,
            lease: None,
            issued_for: None,
            provider_asked_at: None,
            grant_ends_at: None,
            grant_end_reported: false,
            filed_due_at: None,
            created_at: now,
            updated_at: now,
            sealed: vec![],
            version: 1,
        }
    }

    /// What a read of `limit` + 2 returns from a connection with `users` user tokens and,
    /// when `shared`, the shared token first.
    fn read(shared: bool, users: usize, limit: usize) -> Vec<StoredToken> {
        let owners = (0..users).map(|i| Owner::User(Subject::parse(&format!("u{i:04}")).unwrap()));
        let all: Vec<Owner> = shared
            .then_some(Owner::Shared)
            .into_iter()
            .chain(owners)
            .collect();
        all.into_iter().take(limit + 2).map(token).collect()
    }

    #[test]
    fn the_limit_is_the_documented_one() {
        // UserTokenCounts::complete, GET /connections and docs/design.md name it.
        assert_eq!(HEALTH_TOKEN_LIMIT, 1000);
    }

    #[test]
    fn a_connection_at_the_limit_is_counted_completely() {
        for shared in [false, true] {
            for users in [0, 1, 2, 3] {
                let (counted, complete) = first_users(read(shared, users, 3), 3);
                assert_eq!((counted.len(), complete), (users, true), "{shared} {users}");
                assert!(counted.iter().all(|t| t.owner != Owner::Shared));
            }
        }
    }

    #[test]
    fn a_connection_beyond_the_limit_is_counted_up_to_it_and_said_incomplete() {
        for shared in [false, true] {
            for users in [4, 5, 50] {
                let (counted, complete) = first_users(read(shared, users, 3), 3);
                assert_eq!((counted.len(), complete), (3, false), "{shared} {users}");
            }
        }
    }
}
