//! Keyport against a token endpoint that fails on purpose (`faulty_provider`): server errors,
//! rate limiting, a hang, a closed or refused connection, `invalid_grant` (with and without a
//! refresher that won meanwhile), and a store or key service failing right after the provider
//! rotated the refresh token. Each test reads a due token through the service and through
//! `GET /connections/{id}/token`, and checks that what is stored is either the rotated grant or
//! the old one byte for byte, and that no token reached a log line.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyport_shared::adapters::outbound::{OutboundHttp, OutboundSettings};
use keyport_shared::crypto::{EnvelopeCipher, KeyCacheLimits};
use keyport_shared::domain::{
    AuditEvent, Connection, ConnectionId, Owner, PendingAuthorization, StateToken, StoredToken,
    TokenSecrets, TokenStatus, UrlPolicy,
};
use keyport_shared::http::{DevSigningKey, Function, LocalJwtVerifier};
use keyport_shared::oauth::{OAuthClient, OAuthSettings};
use keyport_shared::ports::{
    AuditLog, ConnectionStore, ConsoleRecordKind, ConsoleStore, DataKey, DataKeyProvider, Expect,
    KeyContext, KeyError, Page, PageRequest, PendingAuthorizationStore, Retired, Store, StoreError,
    TokenKey, TokenStore,
};
use keyport_shared::service::{
    Backoff, Keyport, KeyportSettings, OwnerRequest, ServiceError, TokenView,
};
use keyport_tests::backends::Backend;
use keyport_tests::faulty_provider::{Answer, FaultyProvider, TokenRequest, Tokens};
use keyport_tests::keyport::{admin, bot};
use keyport_tests::logs::CapturedLogs;
use keyport_tests::oidc::CALLBACK_URL;
use keyport_tests::server::TestServer;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use zeroize::Zeroizing;

crate::on_both_backends_with_logs!(
    server_errors_then_success_are_retried_and_the_rotated_token_is_stored,
    server_errors_every_time_leave_the_stored_token_untouched,
    rate_limiting_is_waited_out_up_to_the_cap,
    a_hanging_provider_times_out_and_leaves_the_stored_token_untouched,
    a_closed_connection_is_retried_and_then_unreachable,
    a_refused_connection_is_retried_and_then_unreachable,
    invalid_grant_needs_a_new_authorization_and_one_recovers,
    invalid_grant_after_another_refresher_won_serves_the_newer_token,
    a_still_valid_token_is_served_while_the_provider_is_down,
    a_rotated_token_survives_a_failing_store_write,
    a_rotated_token_survives_a_failing_key_service,
    a_rotated_grant_is_kept_while_its_due_shard_is_hot,
    a_disconnect_during_a_refresh_wins_and_the_refreshed_grant_is_revoked,
    a_connection_delete_during_a_refresh_leaves_no_token_behind,
    a_connection_with_more_tokens_than_a_request_can_end_is_deleted_by_the_refresher,
    a_newer_authorization_during_a_refresh_wins_and_the_refreshed_grant_is_revoked,
    no_refresh_starts_that_the_invocation_could_not_wait_for,
);

const BOTS: &[&str] = &["bots"];
/// A `min_valid_seconds` longer than the hour a refreshed token has left: the read refreshes.
const MORE_THAN_AN_HOUR: u64 = 2 * 60 * 60;

/// How the scene's Keyport is built.
struct Setup {
    /// Where the connection's token endpoint is; the faulty provider unless set.
    token_url: Option<String>,
    /// The outbound client's whole-request timeout.
    timeout: Duration,
    /// When the seeded access token expires, from now (negative: already expired).
    expires_in: chrono::Duration,
    store: Option<Arc<dyn Store>>,
    keys: Option<Arc<dyn DataKeyProvider>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            token_url: None,
            timeout: Duration::from_secs(15),
            expires_in: chrono::Duration::minutes(-5),
            store: None,
            keys: None,
        }
    }
}

/// One connection to the faulty provider with a seeded, due token; a Keyport with quick
/// backoff over the test's back-end; and the tokens in play, for the leak check.
struct Scene {
    backend: Backend,
    provider: FaultyProvider,
    keyport: Arc<Keyport>,
    connection: Connection,
    key: TokenKey,
    seeded: Tokens,
    secrets: Mutex<Vec<String>>,
    logs: CapturedLogs,
}

impl Scene {
    async fn new(backend: Backend, logs: CapturedLogs) -> Scene {
        Scene::with(backend, logs, Setup::default()).await
    }

    /// A scene whose store's writes the test can make fail, and that store.
    async fn with_flaky_store(backend: Backend, logs: CapturedLogs) -> (Scene, Arc<FlakyStore>) {
        let store = Arc::new(FlakyStore::new(backend.store.clone()));
        let setup = Setup {
            store: Some(store.clone()),
            ..Setup::default()
        };
        (Scene::with(backend, logs, setup).await, store)
    }

    async fn with(backend: Backend, logs: CapturedLogs, setup: Setup) -> Scene {
        let provider = FaultyProvider::start().await;
        let mut settings = KeyportSettings::new(UrlPolicy::LocalDevelopment);
        // Scenes refresh again and again on purpose; the on-demand limit has tests of its own.
        settings.on_demand_refresh_interval = Duration::ZERO;
        // A delete ends three tokens itself and leaves the rest to the refresher, which purges
        // a deleted connection as soon as its tokens are gone.
        settings.delete_in_line_tokens = 3;
        settings.retired_grace = Duration::ZERO;
        // Quick retries; a cap above the one-second Retry-After the tests honour.
        settings.backoff = Backoff {
            attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_secs(2),
        };
        let mut outbound = OutboundSettings::new(settings.url_policy);
        outbound.timeout = setup.timeout;
        let oauth = OAuthClient::new(
            OutboundHttp::new(outbound).expect("outbound HTTP client"),
            OAuthSettings {
                callback_url: CALLBACK_URL.parse().expect("a URL"),
                allow_password_grant: false,
            },
        );
        let keys = setup.keys.unwrap_or_else(|| backend.keys.clone());
        let keyport = Arc::new(Keyport::new(
            setup.store.unwrap_or_else(|| backend.store.clone()),
            backend.secrets.clone(),
            Arc::new(EnvelopeCipher::new(keys, KeyCacheLimits::default())),
            oauth,
            settings,
        ));
        let client_secret = format!("faulty-client-secret-{}", uuid::Uuid::new_v4().simple());
        let input = serde_json::from_value(serde_json::json!({
            "name": format!("faulty-{}", uuid::Uuid::new_v4().simple()),
            "provider": "custom",
            "grant_type": "authorization_code",
            "client_id": "keyport-faulty",
            "client_secret": client_secret,
            "authorization_url": provider.authorization_url,
            "token_url": setup.token_url.as_deref().unwrap_or(&provider.token_url),
            "revocation_url": provider.revocation_url,
            "scopes": "api:read,offline_access",
            "invited_roles": ["bots"],
        }))
        .expect("a connection request");
        let connection = keyport
            .create_connection(&admin(), input)
            .await
            .expect("the connection is created");
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: Owner::Shared,
        };
        let scene = Scene {
            backend,
            provider,
            keyport,
            connection,
            key,
            seeded: Tokens::fresh(),
            secrets: Mutex::new(vec![client_secret]),
            logs,
        };
        scene.remember(&scene.seeded);
        let now = Utc::now();
        // Out of the refresher's due index: only the reads of the test refresh it.
        let record = StoredToken {
            connection_id: scene.key.connection_id.clone(),
            owner: Owner::Shared,
            status: TokenStatus::Valid,
            token_type: "Bearer".into(),
            scope: Some("api:read offline_access".into()),
            expires_at: Some(now + setup.expires_in),
            refresh_due_at: None,
            has_refresh_token: true,
            last_error: None,
            lease: None,
            issued_for: None,
            provider_asked_at: None,
            grant_ends_at: None,
            grant_end_reported: false,
            filed_due_at: None,
            created_at: now - chrono::Duration::hours(2),
            updated_at: now - chrono::Duration::hours(1),
            sealed: scene.seal(&scene.seeded).await,
            version: 0,
        };
        scene
            .backend
            .store
            .put_token(&record, Expect::Absent)
            .await
            .expect("the seeded token is stored");
        scene
    }

    fn remember(&self, tokens: &Tokens) {
        let mut secrets = self.secrets.lock().unwrap();
        secrets.push(tokens.access_token.clone());
        secrets.extend(tokens.refresh_token.clone());
    }

    /// New tokens for the provider to hand out, remembered for the leak check.
    fn fresh(&self) -> Tokens {
        let tokens = Tokens::fresh();
        self.remember(&tokens);
        tokens
    }

    async fn seal(&self, tokens: &Tokens) -> Vec<u8> {
        self.seal_for(&self.key, tokens).await
    }

    async fn seal_for(&self, key: &TokenKey, tokens: &Tokens) -> Vec<u8> {
        let secrets = TokenSecrets {
            access_token: SecretString::from(tokens.access_token.clone()),
            refresh_token: tokens.refresh_token.clone().map(SecretString::from),
            id_token: None,
            extra: Default::default(),
        };
        self.backend
            .cipher()
            .seal_token(key, &secrets)
            .await
            .expect("sealed")
    }

    /// The stored record, read through the store's own trait (beneath any injected fault).
    async fn stored(&self) -> StoredToken {
        self.backend
            .store
            .get_token(&self.key)
            .await
            .expect("the store answers")
            .expect("a stored token")
    }

    /// Lets time pass over the stored token: its access token is now expired (the sealed
    /// grant stays as it is).
    async fn expire(&self) -> StoredToken {
        let mut stored = self.stored().await;
        stored.expires_at = Some(Utc::now() - chrono::Duration::minutes(5));
        self.backend
            .store
            .put_token(&stored, Expect::Version(stored.version))
            .await
            .expect("the token is aged")
    }

    /// The stored access and refresh tokens, decrypted.
    async fn stored_tokens(&self) -> (String, Option<String>) {
        let secrets = self
            .backend
            .cipher()
            .open_token(&self.key, &self.stored().await.sealed)
            .await
            .expect("the stored token opens");
        (
            secrets.access_token.expose_secret().to_owned(),
            secrets.refresh_token.map(|t| t.expose_secret().to_owned()),
        )
    }

    /// A read through the service, as the bot.
    async fn read(&self) -> Result<TokenView, ServiceError> {
        self.keyport
            .access_token(&bot(), &self.connection.id, OwnerRequest::Shared, None)
            .await
    }

    /// A read through `GET /connections/{id}/token` of the in-process local server.
    async fn http_read(&self, server: &TestServer, min_valid_seconds: Option<u64>) -> Reply {
        let mut path = format!("/connections/{}/token", self.connection.id);
        if let Some(seconds) = min_valid_seconds {
            path.push_str(&format!("?min_valid_seconds={seconds}"));
        }
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
            .get(server.url(&path))
            .bearer_auth(server.token("bot-1", BOTS))
            .send()
            .await
            .expect("the server answers");
        Reply {
            status: response.status().as_u16(),
            retry_after: response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ASCII").to_owned()),
            body: response.json().await.expect("a JSON body"),
        }
    }

    /// The same route served by the scene's own Keyport (whose settings the local server's
    /// flags do not reach, such as the outbound timeout), called in process.
    async fn route_read(&self) -> Reply {
        self.route(
            axum::http::Method::GET,
            &format!("/connections/{}/token", self.connection.id),
            "bot-1",
            "bots",
        )
        .await
    }

    /// One request to the routes of the scene's own Keyport, as `subject` holding `role`.
    async fn route(
        &self,
        method: axum::http::Method,
        path: &str,
        subject: &str,
        role: &str,
    ) -> Reply {
        use tower::ServiceExt;
        let dir = tempfile::tempdir().expect("temporary folder");
        let dev_key =
            DevSigningKey::load_or_create(&dir.path().join("dev.key")).expect("a signing key");
        let (issuer, audience, claim) = ("keyport-local", "keyport", "cognito:groups");
        let bearer = dev_key
            .mint(
                subject,
                &[role.to_owned()],
                Duration::from_secs(600),
                issuer,
                audience,
                claim,
            )
            .expect("a bearer token");
        let router = keyport_shared::http::router(
            self.keyport.clone(),
            Arc::new(LocalJwtVerifier::development(
                &dev_key, issuer, audience, claim,
            )),
            &Function::ALL,
        );
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {bearer}"))
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        Reply {
            status,
            retry_after,
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON body")
            },
        }
    }

    fn refresh_requests(&self) -> Vec<TokenRequest> {
        let requests = self.provider.requests();
        assert!(
            requests.iter().all(|r| r.grant_type == "refresh_token"),
            "{requests:?}"
        );
        requests
    }

    /// Every request so far was a refresh that presented `refresh_token`.
    fn assert_all_presented(&self, count: usize, refresh_token: &str) {
        let requests = self.refresh_requests();
        assert_eq!(requests.len(), count, "{requests:?}");
        for request in &requests {
            assert_eq!(request.refresh_token.as_deref(), Some(refresh_token));
        }
    }

    fn assert_no_token_in_logs(&self) {
        let secrets = self.secrets.lock().unwrap().clone();
        self.logs.assert_free_of(secrets.iter().map(String::as_str));
    }
}

struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Reply {
    /// A JSON error with this status and code, and a sentence for a message.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"], code, "{}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
    }

    /// A 503 that says when to come back.
    fn assert_unavailable(&self, code: &str) -> u64 {
        self.assert_error(503, code);
        self.retry_after
            .as_deref()
            .expect("a Retry-After header")
            .parse::<u64>()
            .expect("Retry-After in seconds")
    }

    fn access_token(&self) -> &str {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body["access_token"].as_str().expect("an access token")
    }
}

/// The token is exactly as it was: the same sealed bytes and the same fields; only the lease
/// bookkeeping (version, lease, when the provider was last asked) may have moved, the failure
/// is recorded, and the
/// lease is given back.
fn assert_untouched(before: &StoredToken, after: &StoredToken) {
    assert_eq!(before.sealed, after.sealed, "the sealed bytes changed");
    assert!(
        after.lease.is_none(),
        "the refresh lease was not given back"
    );
    // The grant is untouched; what happened is recorded beside it (the token's health says
    // refresh_failing, and the next success clears it).
    let failure = after
        .last_error
        .as_ref()
        .expect("the failed refresh is recorded on the token");
    assert!(
        !failure.code.is_empty() && failure.message.contains(&failure.code),
        "{failure:?}"
    );
    let mut before = before.clone();
    let mut after = after.clone();
    (before.version, before.lease, before.provider_asked_at) = (0, None, None);
    (after.version, after.lease, after.provider_asked_at) = (0, None, None);
    (before.last_error, after.last_error) = (None, None);
    assert_eq!(before, after);
}

fn assert_error(result: Result<TokenView, ServiceError>, code: &str) -> ServiceError {
    let error = result.expect_err("the read fails");
    assert_eq!(error.code(), code, "{error}");
    error
}

async fn server_errors_then_success_are_retried_and_the_rotated_token_is_stored(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    let first = scene.fresh();
    scene.provider.script([
        Answer::Status(500),
        Answer::Status(502),
        Answer::Tokens(first.clone()),
    ]);
    let view = scene.read().await.expect("the read succeeds after retries");
    assert_eq!(view.access_token.expose_secret(), first.access_token);
    scene.assert_all_presented(3, scene.seeded.refresh());
    let stored = scene.stored().await;
    assert_eq!(stored.status, TokenStatus::Valid);
    assert!(stored.lease.is_none());
    assert_eq!(
        scene.stored_tokens().await,
        (first.access_token.clone(), first.refresh_token.clone())
    );

    // Over HTTP, the rotated refresh token is the one presented next.
    let server = TestServer::start(&scene.backend, &[]).await;
    let second = scene.fresh();
    scene
        .provider
        .script([Answer::Status(503), Answer::Tokens(second.clone())]);
    let reply = scene.http_read(&server, Some(MORE_THAN_AN_HOUR)).await;
    assert_eq!(reply.access_token(), second.access_token);
    let requests = scene.refresh_requests();
    assert_eq!(requests.len(), 5);
    for request in &requests[3..] {
        assert_eq!(request.refresh_token.as_deref(), Some(first.refresh()));
    }
    assert_eq!(
        scene.stored_tokens().await,
        (second.access_token.clone(), second.refresh_token.clone())
    );
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn server_errors_every_time_leave_the_stored_token_untouched(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    scene
        .provider
        .script([Answer::Status(500), Answer::Status(502)])
        .otherwise(Answer::Status(503));
    let before = scene.stored().await;
    assert_error(scene.read().await, "provider_unavailable");
    scene.assert_all_presented(3, scene.seeded.refresh());
    assert_untouched(&before, &scene.stored().await);

    let server = TestServer::start(&scene.backend, &[]).await;
    scene
        .http_read(&server, None)
        .await
        .assert_unavailable("provider_unavailable");
    scene.assert_all_presented(6, scene.seeded.refresh());
    assert_untouched(&before, &scene.stored().await);
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn rate_limiting_is_waited_out_up_to_the_cap(backend: Backend, logs: CapturedLogs) {
    let scene = Scene::new(backend, logs).await;
    let first = scene.fresh();
    scene.provider.script([
        Answer::RateLimited {
            retry_after_seconds: 1,
        },
        Answer::Tokens(first.clone()),
    ]);
    let view = scene.read().await.expect("the wait is honoured");
    assert_eq!(view.access_token.expose_secret(), first.access_token);
    scene.assert_all_presented(2, scene.seeded.refresh());

    // A wait longer than the cap is not waited out: the caller is told when to come back.
    let before = scene.expire().await;
    let server = TestServer::start(&scene.backend, &[]).await;
    scene.provider.otherwise(Answer::RateLimited {
        retry_after_seconds: 60,
    });
    let retry_after = scene
        .http_read(&server, None)
        .await
        .assert_unavailable("provider_rate_limited");
    assert_eq!(retry_after, 60);
    let requests = scene.refresh_requests();
    assert_eq!(requests.len(), 3, "no retry beyond the cap: {requests:?}");
    assert_eq!(requests[2].refresh_token.as_deref(), Some(first.refresh()));
    assert_untouched(&before, &scene.stored().await);
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn a_hanging_provider_times_out_and_leaves_the_stored_token_untouched(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::with(
        backend,
        logs,
        Setup {
            timeout: Duration::from_millis(300),
            ..Setup::default()
        },
    )
    .await;
    scene.provider.otherwise(Answer::Hang);
    let before = scene.stored().await;
    assert_error(scene.read().await, "provider_timeout");
    scene.assert_all_presented(3, scene.seeded.refresh());
    assert_untouched(&before, &scene.stored().await);

    // The local server's outbound timeout is not a flag: the route is served by this Keyport.
    scene
        .route_read()
        .await
        .assert_unavailable("provider_timeout");
    scene.assert_all_presented(6, scene.seeded.refresh());
    assert_untouched(&before, &scene.stored().await);
    scene.provider.release_hung();
    scene.assert_no_token_in_logs();
}

async fn a_closed_connection_is_retried_and_then_unreachable(backend: Backend, logs: CapturedLogs) {
    let scene = Scene::new(backend, logs).await;
    let first = scene.fresh();
    scene
        .provider
        .script([Answer::Close, Answer::Tokens(first.clone())]);
    let view = scene.read().await.expect("the read succeeds on the retry");
    assert_eq!(view.access_token.expose_secret(), first.access_token);
    scene.assert_all_presented(2, scene.seeded.refresh());

    let before = scene.expire().await;
    let server = TestServer::start(&scene.backend, &[]).await;
    scene.provider.otherwise(Answer::Close);
    scene
        .http_read(&server, None)
        .await
        .assert_unavailable("provider_unreachable");
    let requests = scene.refresh_requests();
    assert_eq!(requests.len(), 5, "{requests:?}");
    assert_untouched(&before, &scene.stored().await);
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn a_refused_connection_is_retried_and_then_unreachable(
    backend: Backend,
    logs: CapturedLogs,
) {
    let nobody = format!("http://127.0.0.1:{}/token", keyport_tests::free_port());
    let scene = Scene::with(
        backend,
        logs,
        Setup {
            token_url: Some(nobody),
            ..Setup::default()
        },
    )
    .await;
    let before = scene.stored().await;
    assert_error(scene.read().await, "provider_unreachable");
    assert_untouched(&before, &scene.stored().await);

    let server = TestServer::start(&scene.backend, &[]).await;
    scene
        .http_read(&server, None)
        .await
        .assert_unavailable("provider_unreachable");
    assert_untouched(&before, &scene.stored().await);
    assert!(scene.provider.requests().is_empty());
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn invalid_grant_needs_a_new_authorization_and_one_recovers(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    scene.provider.script([Answer::InvalidGrant]);
    let before = scene.stored().await;
    let server = TestServer::start(&scene.backend, &[]).await;

    let reply = scene.http_read(&server, None).await;
    reply.assert_error(409, "needs_reauthorization");
    let message = reply.body["message"].as_str().unwrap();
    assert!(message.contains("authoriz"), "{message}");
    assert!(reply.retry_after.is_none());
    scene.assert_all_presented(1, scene.seeded.refresh());
    let failed = scene.stored().await;
    assert_eq!(failed.status, TokenStatus::NeedsReauthorization);
    assert_eq!(failed.last_error.as_ref().unwrap().code, "invalid_grant");
    assert_eq!(failed.refresh_due_at, None);
    assert!(failed.lease.is_none());
    assert_eq!(failed.sealed, before.sealed);

    // Later reads are refused the same way without asking the provider again.
    assert_error(scene.read().await, "needs_reauthorization");
    scene
        .http_read(&server, None)
        .await
        .assert_error(409, "needs_reauthorization");
    scene.assert_all_presented(1, scene.seeded.refresh());

    // A new authorization (the real callback path) stores a new grant and reads work again.
    let granted = scene.fresh();
    scene.provider.script([Answer::Tokens(granted.clone())]);
    let started = scene
        .keyport
        .start_authorization(&admin(), &scene.connection.id, OwnerRequest::Shared, None)
        .await
        .expect("the authorization starts");
    let code = format!("faulty-code-{}", uuid::Uuid::new_v4().simple());
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("code", &code)
        .append_pair("state", &started.state)
        .finish();
    keyport_tests::keyport::finish_authorization(&scene.keyport, &admin(), &query)
        .await
        .expect("the callback completes");
    let requests = scene.provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].grant_type, "authorization_code");
    assert_eq!(requests[1].code.as_deref(), Some(code.as_str()));
    let recovered = scene.stored().await;
    assert_eq!(recovered.status, TokenStatus::Valid);
    assert!(recovered.last_error.is_none());
    assert_eq!(
        scene.http_read(&server, None).await.access_token(),
        granted.access_token
    );
    assert_eq!(scene.provider.requests().len(), 2);
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

/// While the provider holds a refresh, writes `newer` as another instance that finished a
/// refresh would (over the leased version), then lets the provider answer.
async fn win_the_race(scene: &Scene, newer: &Tokens) {
    let paused = scene.provider.paused().await;
    let current = scene.stored().await;
    assert!(current.lease.is_some(), "the reader holds the lease");
    let mut won = current.clone();
    won.lease = None;
    won.expires_at = Some(Utc::now() + chrono::Duration::hours(1));
    won.updated_at = Utc::now();
    won.sealed = scene.seal(newer).await;
    scene
        .backend
        .store
        .put_token(&won, Expect::Version(current.version))
        .await
        .expect("the other refresher's write");
    paused.resume();
}

async fn invalid_grant_after_another_refresher_won_serves_the_newer_token(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    scene.provider.script([Answer::InvalidGrant.after_test()]);
    let newer = scene.fresh();
    let (read, ()) = tokio::join!(scene.read(), win_the_race(&scene, &newer));
    let view = read.expect("the newer token, not a failure");
    assert_eq!(view.access_token.expose_secret(), newer.access_token);
    scene.assert_all_presented(1, scene.seeded.refresh());
    let stored = scene.stored().await;
    assert_eq!(stored.status, TokenStatus::Valid);
    assert!(stored.last_error.is_none());
    assert_eq!(
        scene.stored_tokens().await,
        (newer.access_token.clone(), newer.refresh_token.clone())
    );

    // The same race seen through the HTTP route.
    let server = TestServer::start(&scene.backend, &[]).await;
    scene.provider.script([Answer::InvalidGrant.after_test()]);
    let newest = scene.fresh();
    let (reply, ()) = tokio::join!(
        scene.http_read(&server, Some(MORE_THAN_AN_HOUR)),
        win_the_race(&scene, &newest)
    );
    assert_eq!(reply.access_token(), newest.access_token);
    let requests = scene.refresh_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].refresh_token.as_deref(), Some(newer.refresh()));
    assert_eq!(scene.stored().await.status, TokenStatus::Valid);
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn a_still_valid_token_is_served_while_the_provider_is_down(
    backend: Backend,
    logs: CapturedLogs,
) {
    // Inside the default 60-second margin, so due, but not expired.
    let scene = Scene::with(
        backend,
        logs,
        Setup {
            expires_in: chrono::Duration::seconds(45),
            ..Setup::default()
        },
    )
    .await;
    scene.provider.otherwise(Answer::Status(503));
    let before = scene.stored().await;
    let view = scene.read().await.expect("the current token, not an error");
    assert_eq!(view.access_token.expose_secret(), scene.seeded.access_token);
    scene.assert_all_presented(3, scene.seeded.refresh());
    assert_untouched(&before, &scene.stored().await);

    let server = TestServer::start(&scene.backend, &[]).await;
    let reply = scene.http_read(&server, None).await;
    assert_eq!(reply.access_token(), scene.seeded.access_token);
    scene.assert_all_presented(6, scene.seeded.refresh());
    assert_untouched(&before, &scene.stored().await);
    server.server.stop().await;
    scene.assert_no_token_in_logs();
}

async fn a_rotated_token_survives_a_failing_store_write(backend: Backend, logs: CapturedLogs) {
    let (scene, store) = Scene::with_flaky_store(backend, logs).await;
    // The write is retried for as long as the lease holds (30 s; 30 failures take about
    // 5 s of backoff here), not a fixed handful of times.
    let mut presented = scene.seeded.clone();
    let mut injected = 0;
    for failures in [2, 8, 30] {
        let rotated = scene.fresh();
        scene
            .provider
            .script([Answer::Tokens(rotated.clone()).after_test()]);
        let (read, ()) = tokio::join!(scene.read(), async {
            // The lease is taken; the provider has rotated the grant: now the store fails.
            let paused = scene.provider.paused().await;
            store.fail_next_puts(failures);
            paused.resume();
        });
        let view = read.unwrap_or_else(|e| panic!("{failures} failed writes: {e:?}"));
        assert_eq!(view.access_token.expose_secret(), rotated.access_token);
        injected += failures;
        assert_eq!(store.failures(), injected);
        let last = scene.refresh_requests().pop().expect("a refresh");
        assert_eq!(last.refresh_token.as_deref(), Some(presented.refresh()));
        assert_eq!(
            scene.stored_tokens().await,
            (rotated.access_token.clone(), rotated.refresh_token.clone()),
            "{failures} failed writes: the rotated grant is kept"
        );
        presented = rotated;
        scene.expire().await;
    }
    assert_eq!(scene.refresh_requests().len(), 3, "one refresh a round");
    scene.assert_no_token_in_logs();
}

/// A hot due shard throttles the writes that move an entry in it: the rotated grant is written
/// at once without moving its entry (not retried until its lease runs out and lost), and the
/// refresher files it under its own due time afterwards without asking the provider again.
async fn a_rotated_grant_is_kept_while_its_due_shard_is_hot(backend: Backend, logs: CapturedLogs) {
    let (scene, store) = Scene::with_flaky_store(backend, logs).await;
    // The seeded token filed in the due index as a refreshed one would be: due by now.
    let mut seeded = scene.stored().await;
    seeded.refresh_due_at = Some(Utc::now() - chrono::Duration::minutes(1));
    let seeded = scene
        .backend
        .store
        .put_token(&seeded, Expect::Version(seeded.version))
        .await
        .expect("filed as due");
    let filed_before = seeded.due_filing();
    let rotated = scene.fresh();
    scene
        .provider
        .script([Answer::Tokens(rotated.clone()).after_test()]);
    let (read, ()) = tokio::join!(scene.read(), async {
        let paused = scene.provider.paused().await;
        store.heat_due_index(true);
        paused.resume();
    });
    let view = read.expect("the grant is written without moving its due entry");
    assert_eq!(view.access_token.expose_secret(), rotated.access_token);
    assert_eq!(
        store.failures(),
        1,
        "one refused write, then the entry left in place"
    );
    assert_eq!(
        scene.stored_tokens().await,
        (rotated.access_token.clone(), rotated.refresh_token.clone())
    );
    let kept = scene.stored().await;
    assert_eq!(kept.filed_due_at, filed_before);
    assert!(kept.refresh_due_at > filed_before, "{kept:?}");

    store.heat_due_index(false);
    scene
        .keyport
        .refresh_due(
            tokio::time::Instant::now() + std::time::Duration::from_secs(60),
            2,
        )
        .await
        .expect("a refresher run");
    let refiled = scene.stored().await;
    assert_eq!(refiled.filed_due_at, None);
    assert_eq!(refiled.due_filing(), kept.refresh_due_at);
    assert_eq!(
        scene.refresh_requests().len(),
        1,
        "filing it again asked the provider nothing"
    );
    scene.assert_no_token_in_logs();
}

async fn a_rotated_token_survives_a_failing_key_service(backend: Backend, logs: CapturedLogs) {
    let keys = Arc::new(FlakyKeys::new(backend.keys.clone()));
    let scene = Scene::with(
        backend,
        logs,
        Setup {
            keys: Some(keys.clone()),
            ..Setup::default()
        },
    )
    .await;
    let rotated = scene.fresh();
    scene
        .provider
        .script([Answer::Tokens(rotated.clone()).after_test()]);
    let (read, ()) = tokio::join!(scene.read(), async {
        let paused = scene.provider.paused().await;
        keys.fail_next_data_keys(2);
        paused.resume();
    });
    let view = read.expect("sealing is retried");
    assert_eq!(view.access_token.expose_secret(), rotated.access_token);
    assert_eq!(keys.failures(), 2);
    scene.assert_all_presented(1, scene.seeded.refresh());
    assert_eq!(
        scene.stored_tokens().await,
        (rotated.access_token.clone(), rotated.refresh_token.clone())
    );
    scene.assert_no_token_in_logs();
}

/// Fails the next `n` of something when the test says so, and counts the failures.
#[derive(Default)]
struct Faults {
    pending: AtomicU32,
    injected: AtomicU32,
}

impl Faults {
    fn arm(&self, n: u32) {
        self.pending.store(n, Ordering::SeqCst);
    }

    fn fire(&self) -> bool {
        let fired = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fired {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        fired
    }

    fn injected(&self) -> u32 {
        self.injected.load(Ordering::SeqCst)
    }
}

/// A store whose token writes fail with `Unavailable` when armed; everything else passes
/// through.
struct FlakyStore {
    inner: Arc<dyn Store>,
    faults: Faults,
    /// While set, a token write that would move the token's due index entry is refused as a
    /// throttled hot due shard would be.
    hot_due_index: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            faults: Faults::default(),
            hot_due_index: Default::default(),
        }
    }

    fn heat_due_index(&self, hot: bool) {
        self.hot_due_index.store(hot, Ordering::SeqCst);
    }

    fn fail_next_puts(&self, n: u32) {
        self.faults.arm(n);
    }

    fn failures(&self) -> u32 {
        self.faults.injected()
    }
}

#[async_trait]
impl ConnectionStore for FlakyStore {
    async fn create_connection(&self, connection: &Connection) -> Result<Connection, StoreError> {
        self.inner.create_connection(connection).await
    }

    async fn get_connection(&self, id: &ConnectionId) -> Result<Option<Connection>, StoreError> {
        self.inner.get_connection(id).await
    }

    async fn list_connections(&self, page: PageRequest) -> Result<Page<Connection>, StoreError> {
        self.inner.list_connections(page).await
    }

    async fn update_connection(&self, connection: &Connection) -> Result<Connection, StoreError> {
        self.inner.update_connection(connection).await
    }

    async fn retire_connection(
        &self,
        id: &ConnectionId,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        self.inner.retire_connection(id, expected_version).await
    }

    async fn retired_connections(&self, limit: u32) -> Result<Vec<Retired>, StoreError> {
        self.inner.retired_connections(limit).await
    }

    async fn retired_connection(&self, id: &ConnectionId) -> Result<Option<Retired>, StoreError> {
        self.inner.retired_connection(id).await
    }

    async fn purge_connection(&self, id: &ConnectionId) -> Result<(), StoreError> {
        self.inner.purge_connection(id).await
    }

    async fn invited_connections(
        &self,
        invitee: &keyport_shared::domain::Invitee,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        self.inner.invited_connections(invitee).await
    }

    async fn invitations_indexed(&self) -> Result<bool, StoreError> {
        self.inner.invitations_indexed().await
    }

    async fn index_invitations(&self) -> Result<u64, StoreError> {
        self.inner.index_invitations().await
    }
}

#[async_trait]
impl TokenStore for FlakyStore {
    async fn get_token(&self, key: &TokenKey) -> Result<Option<StoredToken>, StoreError> {
        self.inner.get_token(key).await
    }

    async fn get_connection_and_token(
        &self,
        key: &TokenKey,
    ) -> Result<(Option<Arc<Connection>>, Option<StoredToken>), StoreError> {
        self.inner.get_connection_and_token(key).await
    }

    async fn put_token(
        &self,
        token: &StoredToken,
        expect: Expect,
    ) -> Result<StoredToken, StoreError> {
        if self.faults.fire() {
            return Err(StoreError::Unavailable("injected by the test".into()));
        }
        if self.hot_due_index.load(Ordering::SeqCst) {
            let key = TokenKey {
                connection_id: token.connection_id.clone(),
                owner: token.owner.clone(),
            };
            let filed_now = self
                .inner
                .get_token(&key)
                .await?
                .and_then(|t| t.due_filing());
            if token.due_filing() != filed_now {
                self.faults.injected.fetch_add(1, Ordering::SeqCst);
                return Err(StoreError::Unavailable(
                    "a hot due shard (injected by the test)".into(),
                ));
            }
        }
        self.inner.put_token(token, expect).await
    }

    async fn delete_token(&self, key: &TokenKey, expected_version: u64) -> Result<(), StoreError> {
        self.inner.delete_token(key, expected_version).await
    }

    async fn list_tokens(
        &self,
        connection_id: &ConnectionId,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.inner.list_tokens(connection_id).await
    }

    async fn first_tokens(
        &self,
        connection_id: &ConnectionId,
        limit: u32,
    ) -> Result<Vec<StoredToken>, StoreError> {
        self.inner.first_tokens(connection_id, limit).await
    }

    async fn user_tokens(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<StoredToken>, StoreError> {
        self.inner.user_tokens(connection_id, page).await
    }

    fn due_shards(&self) -> u32 {
        self.inner.due_shards()
    }

    async fn due_tokens_in_shard(
        &self,
        shard: u32,
        window: keyport_shared::ports::DueWindow,
        page: PageRequest,
    ) -> Result<Page<TokenKey>, StoreError> {
        self.inner.due_tokens_in_shard(shard, window, page).await
    }

    async fn due_tokens(
        &self,
        due_by: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<Page<TokenKey>, StoreError> {
        self.inner.due_tokens(due_by, page).await
    }
}

#[async_trait]
impl PendingAuthorizationStore for FlakyStore {
    async fn take_expired_unconfirmed(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PendingAuthorization>, StoreError> {
        self.inner.take_expired_unconfirmed(now, limit).await
    }

    async fn put_pending(
        &self,
        state: &StateToken,
        pending: &PendingAuthorization,
    ) -> Result<(), StoreError> {
        self.inner.put_pending(state, pending).await
    }

    async fn take_pending(
        &self,
        state: &StateToken,
        now: DateTime<Utc>,
    ) -> Result<Option<PendingAuthorization>, StoreError> {
        self.inner.take_pending(state, now).await
    }
}

#[async_trait]
impl AuditLog for FlakyStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        self.inner.append_audit(event).await
    }

    async fn list_audit(
        &self,
        connection_id: &ConnectionId,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        self.inner.list_audit(connection_id, page).await
    }

    async fn record_fetch(
        &self,
        fetch: &keyport_shared::domain::TokenFetch,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.record_fetch(fetch, unless_since).await
    }

    async fn list_fetches(
        &self,
        connection_id: &ConnectionId,
        limit: usize,
    ) -> Result<Vec<keyport_shared::domain::TokenFetch>, StoreError> {
        self.inner.list_fetches(connection_id, limit).await
    }
}

#[async_trait]
impl ConsoleStore for FlakyStore {
    async fn put_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        doc: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .put_console_record(kind, key, doc, expires_at)
            .await
    }

    async fn get_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        self.inner.get_console_record(kind, key, now).await
    }

    async fn take_console_record(
        &self,
        kind: ConsoleRecordKind,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        self.inner.take_console_record(kind, key, now).await
    }
}

#[async_trait]
impl keyport_shared::ports::SettingsStore for FlakyStore {
    async fn get_setting(
        &self,
        name: &str,
    ) -> Result<Option<keyport_shared::ports::StoredSetting>, StoreError> {
        self.inner.get_setting(name).await
    }

    async fn put_setting(
        &self,
        name: &str,
        setting: &keyport_shared::ports::StoredSetting,
    ) -> Result<(), StoreError> {
        self.inner.put_setting(name, setting).await
    }

    async fn delete_setting(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_setting(name).await
    }
}

/// A key service whose new data keys fail with `Unavailable` when armed; unwrapping passes
/// through.
struct FlakyKeys {
    inner: Arc<dyn DataKeyProvider>,
    faults: Faults,
}

impl FlakyKeys {
    fn new(inner: Arc<dyn DataKeyProvider>) -> Self {
        Self {
            inner,
            faults: Faults::default(),
        }
    }

    fn fail_next_data_keys(&self, n: u32) {
        self.faults.arm(n);
    }

    fn failures(&self) -> u32 {
        self.faults.injected()
    }
}

#[async_trait]
impl DataKeyProvider for FlakyKeys {
    async fn generate_data_key(&self, context: &KeyContext) -> Result<DataKey, KeyError> {
        if self.faults.fire() {
            return Err(KeyError::Unavailable("injected by the test".into()));
        }
        self.inner.generate_data_key(context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: &[u8],
        context: &KeyContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.inner.decrypt_data_key(wrapped, context).await
    }
}

/// A read whose refresh is held at the provider while `meanwhile` runs; then the provider
/// answers with `refreshed`. Returns the read's outcome.
async fn refresh_held_while<F: std::future::Future<Output = ()>>(
    scene: &Scene,
    refreshed: &Tokens,
    meanwhile: impl FnOnce() -> F,
) -> Result<TokenView, ServiceError> {
    scene
        .provider
        .script([Answer::Tokens(refreshed.clone()).after_test()]);
    let (read, ()) = tokio::join!(scene.read(), async {
        let paused = scene.provider.paused().await;
        assert_eq!(paused.request.grant_type, "refresh_token");
        meanwhile().await;
        paused.resume();
    });
    read
}

/// The revocations the provider received, as their `token` values.
fn revoked_tokens(provider: &FaultyProvider) -> Vec<String> {
    provider
        .revocations()
        .iter()
        .filter_map(|request| {
            let body = request.rsplit("\r\n\r\n").next().unwrap_or_default();
            url::form_urlencoded::parse(body.as_bytes())
                .find(|(name, _)| name == "token")
                .map(|(_, value)| value.into_owned())
        })
        .collect()
}

async fn a_disconnect_during_a_refresh_wins_and_the_refreshed_grant_is_revoked(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    let refreshed = scene.fresh();
    let read = refresh_held_while(&scene, &refreshed, || async {
        let revoked = scene
            .keyport
            .disconnect(&admin(), &scene.connection.id, OwnerRequest::Shared)
            .await
            .expect("the disconnect, while the refresh is out");
        assert!(revoked);
    })
    .await;
    assert!(
        matches!(read, Err(ServiceError::NotAuthorized { .. })),
        "the read that lost: {read:?}"
    );
    assert!(
        scene
            .backend
            .store
            .get_token(&scene.key)
            .await
            .unwrap()
            .is_none(),
        "the disconnect stands: no token came back"
    );
    let revoked = revoked_tokens(&scene.provider);
    assert!(
        revoked.contains(&scene.seeded.refresh().to_owned()),
        "{revoked:?}"
    );
    assert!(
        revoked.contains(&refreshed.refresh().to_owned()),
        "the refreshed grant is revoked, never kept: {revoked:?}"
    );
    scene.assert_no_token_in_logs();
}

async fn a_connection_delete_during_a_refresh_leaves_no_token_behind(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    let refreshed = scene.fresh();
    let read = refresh_held_while(&scene, &refreshed, || async {
        scene
            .keyport
            .delete_connection(&admin(), &scene.connection.id, None)
            .await
            .expect("the delete, while the refresh is out");
    })
    .await;
    assert!(read.is_err(), "the read that lost: {read:?}");
    assert!(
        scene
            .backend
            .store
            .get_token(&scene.key)
            .await
            .unwrap()
            .is_none(),
        "no orphan token row"
    );
    assert!(
        scene
            .backend
            .store
            .list_tokens(&scene.connection.id)
            .await
            .unwrap()
            .is_empty()
    );
    let due = scene
        .backend
        .store
        .due_tokens(
            Utc::now() + chrono::Duration::days(1),
            PageRequest::first(100),
        )
        .await
        .unwrap()
        .items;
    assert!(
        !due.contains(&scene.key),
        "no due-index entry left: {due:?}"
    );
    let revoked = revoked_tokens(&scene.provider);
    assert!(
        revoked.contains(&refreshed.refresh().to_owned()),
        "{revoked:?}"
    );
    scene.assert_no_token_in_logs();
}

async fn a_connection_with_more_tokens_than_a_request_can_end_is_deleted_by_the_refresher(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    // Six users' tokens beside the seeded shared one, all of them due for a refresh.
    let mut grants = vec![scene.seeded.clone()];
    let mut keys = vec![scene.key.clone()];
    for user in ["ana", "ben", "cleo", "dev", "eli", "fay"] {
        let key = TokenKey {
            connection_id: scene.connection.id.clone(),
            owner: crate::fixtures::user(user),
        };
        let tokens = scene.fresh();
        let mut record = scene.stored().await;
        record.owner = key.owner.clone();
        record.refresh_due_at = Some(Utc::now());
        record.sealed = scene.seal_for(&key, &tokens).await;
        scene
            .backend
            .store
            .put_token(&record, Expect::Absent)
            .await
            .expect("stored");
        grants.push(tokens);
        keys.push(key);
    }

    let path = format!("/connections/{}", scene.connection.id);
    let deleted = scene
        .route(
            axum::http::Method::DELETE,
            &path,
            "admin-1",
            "keyport-admins",
        )
        .await;
    assert_eq!(deleted.status, 202, "{}", deleted.body);
    assert_eq!(deleted.body["status"], "deleting");
    assert_eq!(deleted.body["tokens_revoked"], 3, "{}", deleted.body);
    assert_eq!(revoked_tokens(&scene.provider).len(), 3);
    // Gone for everyone at once, though tokens are still being ended.
    let read = scene
        .route(axum::http::Method::GET, &path, "admin-1", "keyport-admins")
        .await;
    assert_eq!(read.status, 404, "{}", read.body);
    let token = scene.route_read().await;
    assert_eq!(token.status, 404, "{}", token.body);
    let again = scene
        .route(
            axum::http::Method::DELETE,
            &path,
            "admin-1",
            "keyport-admins",
        )
        .await;
    assert_eq!(again.status, 404, "{}", again.body);

    let report = scene
        .keyport
        .refresh_due(tokio::time::Instant::now() + Duration::from_secs(120), 4)
        .await
        .expect("a refresher run");
    assert_eq!(report.deleted_connection_tokens_revoked, 4, "{report:?}");
    assert_eq!(report.deleted_connections_purged, 1, "{report:?}");
    assert_eq!(
        report.refreshed, 0,
        "a deleted connection's tokens are not refreshed: {report:?}"
    );
    assert!(!report.stopped_early, "{report:?}");

    // Every grant revoked at the provider, once; nothing left behind.
    let mut revoked = revoked_tokens(&scene.provider);
    revoked.sort();
    let mut expected: Vec<String> = grants.iter().map(|g| g.refresh().to_owned()).collect();
    expected.sort();
    assert_eq!(revoked, expected);
    let store = &scene.backend.store;
    assert!(
        store
            .list_tokens(&scene.connection.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.retired_connections(10).await.unwrap().is_empty());
    let due = store
        .due_tokens(
            Utc::now() + chrono::Duration::days(1),
            PageRequest::first(100),
        )
        .await
        .unwrap()
        .items;
    assert!(keys.iter().all(|key| !due.contains(key)), "{due:?}");
    let secret = scene
        .backend
        .secrets
        .get_secret(&keyport_shared::ports::SecretRef::client_secret(
            &scene.connection.id,
        ))
        .await
        .expect("the secret store answers");
    assert!(
        secret.is_none(),
        "the client secret is deleted with the connection"
    );
    let trail = store
        .list_audit(&scene.connection.id, PageRequest::first(100))
        .await
        .unwrap()
        .items;
    let count = |action: &str| trail.iter().filter(|e| e.action.as_str() == action).count();
    assert_eq!(count("connection_deleted"), 1);
    assert_eq!(count("token_revoked"), 7);
    scene.assert_no_token_in_logs();
}

async fn a_newer_authorization_during_a_refresh_wins_and_the_refreshed_grant_is_revoked(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    let refreshed = scene.fresh();
    let authorized = scene.fresh();
    let read = refresh_held_while(&scene, &refreshed, || async {
        scene.provider.script([Answer::Tokens(authorized.clone())]);
        let started = scene
            .keyport
            .start_authorization(&admin(), &scene.connection.id, OwnerRequest::Shared, None)
            .await
            .expect("a new authorization starts");
        keyport_tests::keyport::finish_authorization(
            &scene.keyport,
            &admin(),
            &format!("code=newer&state={}", started.state),
        )
        .await
        .expect("and completes while the refresh is out");
    })
    .await;
    let view = read.expect("the read gets the newer authorization's token");
    assert_eq!(view.access_token.expose_secret(), authorized.access_token);
    assert_eq!(
        scene.stored_tokens().await,
        (
            authorized.access_token.clone(),
            authorized.refresh_token.clone()
        ),
        "the newer authorization stands"
    );
    let revoked = revoked_tokens(&scene.provider);
    assert_eq!(
        revoked,
        [refreshed.refresh().to_owned()],
        "only the refresh's grant"
    );
    scene.assert_no_token_in_logs();
}

async fn no_refresh_starts_that_the_invocation_could_not_wait_for(
    backend: Backend,
    logs: CapturedLogs,
) {
    let scene = Scene::new(backend, logs).await;
    scene.provider.otherwise(Answer::Tokens(scene.fresh()));
    let before = scene.stored().await;
    // 20 s left: less than the provider's 15 s timeout and the 10 s grant write.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let read = keyport_shared::service::deadline::within(deadline, scene.read()).await;
    assert!(
        matches!(
            read,
            Err(ServiceError::Provider(
                keyport_shared::oauth::OAuthError::OutOfTime
            ))
        ),
        "{read:?}"
    );
    assert!(
        scene.provider.requests().is_empty(),
        "the provider was not called"
    );
    let after = scene.stored().await;
    assert!(after.lease.is_none(), "the lease is given back");
    assert_eq!(after.sealed, before.sealed, "the stored grant is untouched");
    // With room to spare the same read refreshes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    keyport_shared::service::deadline::within(deadline, scene.read())
        .await
        .expect("a refresh with time to finish");
    assert_eq!(scene.provider.requests().len(), 1);
    scene.assert_no_token_in_logs();
}

#[async_trait]
impl keyport_shared::ports::NotificationStore for FlakyStore {
    async fn put_webhook(
        &self,
        webhook: &keyport_shared::ports::StoredWebhook,
        expect: Expect,
    ) -> Result<keyport_shared::ports::StoredWebhook, StoreError> {
        self.inner.put_webhook(webhook, expect).await
    }

    async fn get_webhook(
        &self,
        id: &str,
    ) -> Result<Option<keyport_shared::ports::StoredWebhook>, StoreError> {
        self.inner.get_webhook(id).await
    }

    async fn list_webhooks(
        &self,
    ) -> Result<Vec<keyport_shared::domain::WebhookSubscription>, StoreError> {
        self.inner.list_webhooks().await
    }

    async fn delete_webhook(&self, id: &str, version: u64) -> Result<(), StoreError> {
        self.inner.delete_webhook(id, version).await
    }

    async fn enqueue(
        &self,
        entries: &[keyport_shared::ports::OutboxEntry],
    ) -> Result<(), StoreError> {
        self.inner.enqueue(entries).await
    }

    async fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<keyport_shared::ports::OutboxEntry>, StoreError> {
        self.inner.due_outbox(now, limit).await
    }

    async fn remove_outbox(
        &self,
        entry: &keyport_shared::ports::OutboxEntry,
    ) -> Result<(), StoreError> {
        self.inner.remove_outbox(entry).await
    }
}
