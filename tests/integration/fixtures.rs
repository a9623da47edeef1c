//! Valid domain values to store, each distinct.

use chrono::{DateTime, Duration, Utc};
use keyport_shared::domain::{
    Connection, ConnectionId, ConnectionInput, Owner, StoredToken, Subject, TokenStatus, UrlPolicy,
};
use keyport_shared::ports::TokenKey;

pub fn connection(name: &str) -> Connection {
    let input: ConnectionInput = serde_json::from_value(serde_json::json!({
        "name": name,
        "grant_type": "authorization_code_pkce",
        "client_id": "client-1",
        "client_secret": "never-stored-here",
        "authorization_url": "https://login.example.com/authorize",
        "token_url": "https://login.example.com/token",
        "scopes": "openid,offline_access",
        "invited_roles": ["bots"],
    }))
    .expect("a valid connection request");
    Connection::create(input, Utc::now(), UrlPolicy::Production)
        .expect("valid")
        .0
}

pub fn user(subject: &str) -> Owner {
    Owner::User(Subject::parse(subject).expect("valid subject"))
}

pub fn token(key: &TokenKey, due: Option<DateTime<Utc>>) -> StoredToken {
    let now = Utc::now();
    StoredToken {
        connection_id: key.connection_id.clone(),
        owner: key.owner.clone(),
        status: TokenStatus::Valid,
        token_type: "Bearer".into(),
        scope: Some("openid api:read".into()),
        expires_at: Some(now + Duration::hours(1)),
        refresh_due_at: due,
        has_refresh_token: true,
        last_error: None,
        lease: None,
        issued_for: None,
        provider_asked_at: None,
        grant_ends_at: None,
        grant_end_reported: false,
        filed_due_at: None,
        created_at: now,
        updated_at: now,
        sealed: vec![1, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        version: 0,
    }
}

pub fn key(owner: Owner) -> TokenKey {
    TokenKey {
        connection_id: ConnectionId::generate(),
        owner,
    }
}
