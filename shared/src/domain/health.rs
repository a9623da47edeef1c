//! A connection's token health, as an administrator reads it: derived only from the metadata
//! Keyport keeps beside each sealed token, so that reading it never opens a token.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::ids::Owner;
use super::token::{StoredToken, TokenFailure, TokenStatus};

/// A valid token expiring within this is worth a look before it lapses.
pub const EXPIRING_SOON: Duration = Duration::minutes(10);

/// What an administrator should make of one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TokenHealthStatus {
    Valid,
    /// Valid, but expiring within ten minutes.
    ExpiringSoon,
    Expired,
    /// The last refresh failed (the token may still be valid for now).
    RefreshFailing,
    /// Valid, but its grant ends soon however it is used (the provider's documented absolute
    /// lifetime, from `grant_ends_at`): a person must authorize again before then.
    GrantEnding,
    /// The provider refused the grant: a person must authorize again.
    NeedsReauthorization,
    /// There is no token.
    NotAuthorized,
}

impl TokenHealthStatus {
    /// Of `token` (none: never authorized, or disconnected) at `now`.
    ///
    /// The stored status wins over the clock: it says why a token is unusable. A token still
    /// marked valid is failing when its last refresh left an error, unless it has lapsed
    /// already, which is the more urgent thing to say.
    pub fn of(token: Option<&StoredToken>, now: DateTime<Utc>) -> Self {
        let Some(token) = token else {
            return Self::NotAuthorized;
        };
        match token.status {
            TokenStatus::NeedsReauthorization => Self::NeedsReauthorization,
            TokenStatus::RefreshFailed => Self::RefreshFailing,
            TokenStatus::Expired => Self::Expired,
            TokenStatus::Valid => match token.expires_at {
                Some(expiry) if expiry <= now => Self::Expired,
                _ if token.last_error.is_some() => Self::RefreshFailing,
                _ if token.grant_end_reported && token.grant_ends_at.is_some() => Self::GrantEnding,
                Some(expiry) if expiry - now < EXPIRING_SOON => Self::ExpiringSoon,
                _ => Self::Valid,
            },
        }
    }

    /// Whether someone has to act: expiring soon resolves itself when the refresher runs; a
    /// grant ending does not.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            Self::Expired | Self::RefreshFailing | Self::GrantEnding | Self::NeedsReauthorization
        )
    }
}

/// The shared token's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedTokenHealth {
    pub status: TokenHealthStatus,
    /// When the access token expires; null when there is no token or the provider gave no
    /// lifetime.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub expires_at: Option<DateTime<Utc>>,
    /// When Keyport last asked the provider for this token (a refresh, or the grant); null when
    /// unknown.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// Why the last refresh failed; null when it did not.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_error: Option<TokenFailure>,
    /// When the grant dies however it is used (the provider's documented absolute lifetime
    /// from the authorization); null when none is documented or there is no token.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub grant_ends_at: Option<DateTime<Utc>>,
}

impl SharedTokenHealth {
    pub fn of(token: Option<&StoredToken>, now: DateTime<Utc>) -> Self {
        Self {
            status: TokenHealthStatus::of(token, now),
            expires_at: token.and_then(|t| t.expires_at),
            last_refresh_at: token.and_then(|t| t.provider_asked_at),
            last_error: token.and_then(|t| t.last_error.clone()),
            grant_ends_at: token.and_then(|t| t.grant_ends_at),
        }
    }
}

/// The connection's user tokens, counted by health.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserTokenCounts {
    /// User tokens counted.
    pub total: u32,
    pub valid: u32,
    pub expiring_soon: u32,
    pub expired: u32,
    pub refresh_failing: u32,
    pub grant_ending: u32,
    pub needs_reauthorization: u32,
    /// `expired` + `refresh_failing` + `grant_ending` + `needs_reauthorization`: tokens someone
    /// has to act on.
    pub needs_attention: u32,
    /// False when the connection has more user tokens than one summary counts (1,000): the
    /// counts are then of the first ones by owner, a lower bound.
    pub complete: bool,
}

impl UserTokenCounts {
    fn add(&mut self, status: TokenHealthStatus) {
        let counter = match status {
            TokenHealthStatus::Valid => &mut self.valid,
            TokenHealthStatus::ExpiringSoon => &mut self.expiring_soon,
            TokenHealthStatus::Expired => &mut self.expired,
            TokenHealthStatus::RefreshFailing => &mut self.refresh_failing,
            TokenHealthStatus::GrantEnding => &mut self.grant_ending,
            TokenHealthStatus::NeedsReauthorization => &mut self.needs_reauthorization,
            // Only the absence of a token is "not authorized": nothing to count.
            TokenHealthStatus::NotAuthorized => return,
        };
        *counter += 1;
        self.total += 1;
        if status.needs_attention() {
            self.needs_attention += 1;
        }
    }
}

/// A connection's token health: never a token, only what Keyport knows about its tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = json!({
        "shared": {
            "status": "valid",
            "expires_at": "2026-01-05T10:30:00Z",
            "last_refresh_at": "2026-01-05T09:30:00Z",
            "last_error": null,
            "grant_ends_at": "2026-12-21T09:30:00Z"
        },
        "user_tokens": {
            "total": 3, "valid": 2, "expiring_soon": 0, "expired": 0, "refresh_failing": 0,
            "grant_ending": 0, "needs_reauthorization": 1, "needs_attention": 1, "complete": true
        },
        "last_refresh_at": "2026-01-05T09:30:00Z",
        "last_error": {
            "code": "invalid_grant",
            "message": "the provider refused the refresh token",
            "at": "2026-01-05T08:00:00Z"
        }
    }))
)]
pub struct TokenHealth {
    pub shared: SharedTokenHealth,
    pub user_tokens: UserTokenCounts,
    /// The latest time Keyport asked the provider for any token counted here; null when none.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_refresh_at: Option<DateTime<Utc>>,
    /// The latest failure recorded on any token counted here; null when none.
    #[cfg_attr(feature = "openapi", schema(required))]
    pub last_error: Option<TokenFailure>,
}

impl TokenHealth {
    /// From the shared token, the user tokens read (any shared token among them is passed
    /// over: it is `shared`), and whether those were all of them.
    pub fn summarize<'a>(
        shared: Option<&StoredToken>,
        users: impl IntoIterator<Item = &'a StoredToken>,
        complete: bool,
        now: DateTime<Utc>,
    ) -> Self {
        let mut user_tokens = UserTokenCounts {
            complete,
            ..UserTokenCounts::default()
        };
        let mut last_refresh_at = shared.and_then(|t| t.provider_asked_at);
        let mut last_error = shared.and_then(|t| t.last_error.as_ref());
        for token in users.into_iter().filter(|t| t.owner != Owner::Shared) {
            user_tokens.add(TokenHealthStatus::of(Some(token), now));
            last_refresh_at = last_refresh_at.max(token.provider_asked_at);
            if let Some(error) = &token.last_error
                && last_error.is_none_or(|latest| error.at > latest.at)
            {
                last_error = Some(error);
            }
        }
        Self {
            shared: SharedTokenHealth::of(shared, now),
            user_tokens,
            last_refresh_at,
            last_error: last_error.cloned(),
        }
    }

    /// A connection that cannot have a token yet (it was just created).
    pub fn without_tokens() -> Self {
        Self::summarize(None, [], true, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::{ConnectionId, Subject};

    fn now() -> DateTime<Utc> {
        "2026-01-05T09:30:00Z".parse().unwrap()
    }

    fn token(owner: Owner, status: TokenStatus, expires_in: Option<Duration>) -> StoredToken {
        StoredToken {
            connection_id: ConnectionId::generate(),
            owner,
            status,
            token_type: "Bearer".into(),
            scope: None,
            expires_at: expires_in.map(|d| now() + d),
            refresh_due_at: None,
            has_refresh_token: true,
            last_error: None,
            lease: None,
            issued_for: None,
            provider_asked_at: None,
            grant_ends_at: None,
            grant_end_reported: false,
            filed_due_at: None,
            created_at: now(),
            updated_at: now(),
            sealed: b"sealed-secret".to_vec(),
            version: 1,
        }
    }

    fn shared(status: TokenStatus, expires_in: Option<Duration>) -> StoredToken {
        token(Owner::Shared, status, expires_in)
    }

    fn user(name: &str, status: TokenStatus, expires_in: Option<Duration>) -> StoredToken {
        token(
            Owner::User(Subject::parse(name).unwrap()),
            status,
            expires_in,
        )
    }

    fn failure(code: &str, minutes_ago: i64) -> TokenFailure {
        TokenFailure {
            code: code.into(),
            message: format!("{code} happened"),
            at: now() - Duration::minutes(minutes_ago),
        }
    }

    fn status(token: &StoredToken) -> TokenHealthStatus {
        TokenHealthStatus::of(Some(token), now())
    }

    #[test]
    fn no_token_is_not_authorized() {
        assert_eq!(
            TokenHealthStatus::of(None, now()),
            TokenHealthStatus::NotAuthorized
        );
        let health = SharedTokenHealth::of(None, now());
        assert_eq!(health.expires_at, None);
        assert_eq!(health.last_refresh_at, None);
        assert_eq!(health.last_error, None);
    }

    #[test]
    fn a_grant_reported_ending_needs_attention_until_a_new_authorization() {
        let mut ending = shared(TokenStatus::Valid, Some(Duration::hours(1)));
        ending.grant_ends_at = Some(now() + Duration::days(10));
        assert_eq!(
            status(&ending),
            TokenHealthStatus::Valid,
            "not reported yet"
        );
        ending.grant_end_reported = true;
        assert_eq!(status(&ending), TokenHealthStatus::GrantEnding);
        assert!(TokenHealthStatus::GrantEnding.needs_attention());
        assert_eq!(
            SharedTokenHealth::of(Some(&ending), now()).grant_ends_at,
            ending.grant_ends_at
        );
        // An expiring access token is the refresher's; the ending grant is still the news.
        ending.expires_at = Some(now() + Duration::minutes(1));
        assert_eq!(status(&ending), TokenHealthStatus::GrantEnding);
        // A failing refresh or a lapsed token says more.
        ending.last_error = Some(failure("server_error", 1));
        assert_eq!(status(&ending), TokenHealthStatus::RefreshFailing);
        ending.expires_at = Some(now());
        assert_eq!(status(&ending), TokenHealthStatus::Expired);
        let mut user_ending = user("bea", TokenStatus::Valid, None);
        user_ending.grant_end_reported = true;
        // An end no longer documented (the catalog changed) is no longer news.
        assert_eq!(status(&user_ending), TokenHealthStatus::Valid);
        user_ending.grant_ends_at = Some(now() + Duration::days(3));
        let health = TokenHealth::summarize(None, [&user_ending], true, now());
        assert_eq!(health.user_tokens.grant_ending, 1);
        assert_eq!(health.user_tokens.needs_attention, 1);
    }

    #[test]
    fn a_valid_token_is_judged_by_its_expiry() {
        let hour = Some(Duration::hours(1));
        assert_eq!(
            status(&shared(TokenStatus::Valid, hour)),
            TokenHealthStatus::Valid
        );
        assert_eq!(
            status(&shared(TokenStatus::Valid, None)),
            TokenHealthStatus::Valid
        );
        let edge = Some(EXPIRING_SOON);
        assert_eq!(
            status(&shared(TokenStatus::Valid, edge)),
            TokenHealthStatus::Valid
        );
        let soon = Some(EXPIRING_SOON - Duration::seconds(1));
        assert_eq!(
            status(&shared(TokenStatus::Valid, soon)),
            TokenHealthStatus::ExpiringSoon
        );
        for lapsed in [Duration::zero(), Duration::seconds(-1)] {
            assert_eq!(
                status(&shared(TokenStatus::Valid, Some(lapsed))),
                TokenHealthStatus::Expired
            );
        }
    }

    #[test]
    fn the_stored_status_wins_over_the_clock() {
        let hour = Some(Duration::hours(1));
        let lapsed = Some(Duration::hours(-1));
        for expires_in in [hour, lapsed, None] {
            assert_eq!(
                status(&shared(TokenStatus::NeedsReauthorization, expires_in)),
                TokenHealthStatus::NeedsReauthorization
            );
            assert_eq!(
                status(&shared(TokenStatus::RefreshFailed, expires_in)),
                TokenHealthStatus::RefreshFailing
            );
            assert_eq!(
                status(&shared(TokenStatus::Expired, expires_in)),
                TokenHealthStatus::Expired
            );
        }
    }

    #[test]
    fn an_error_on_a_valid_token_is_a_failing_refresh_until_it_lapses() {
        let mut failing = shared(TokenStatus::Valid, Some(Duration::minutes(5)));
        failing.last_error = Some(failure("server_error", 1));
        assert_eq!(status(&failing), TokenHealthStatus::RefreshFailing);
        failing.expires_at = Some(now() - Duration::seconds(1));
        assert_eq!(status(&failing), TokenHealthStatus::Expired);
    }

    #[test]
    fn only_what_someone_must_act_on_needs_attention() {
        let attention: Vec<TokenHealthStatus> = [
            TokenHealthStatus::Valid,
            TokenHealthStatus::ExpiringSoon,
            TokenHealthStatus::Expired,
            TokenHealthStatus::RefreshFailing,
            TokenHealthStatus::NeedsReauthorization,
            TokenHealthStatus::NotAuthorized,
        ]
        .into_iter()
        .filter(|s| s.needs_attention())
        .collect();
        assert_eq!(
            attention,
            [
                TokenHealthStatus::Expired,
                TokenHealthStatus::RefreshFailing,
                TokenHealthStatus::NeedsReauthorization
            ]
        );
    }

    #[test]
    fn user_tokens_are_counted_by_health() {
        let mut asked_late = user("carol", TokenStatus::Valid, Some(Duration::hours(1)));
        asked_late.provider_asked_at = Some(now() - Duration::minutes(2));
        let mut refused = user("dave", TokenStatus::NeedsReauthorization, None);
        refused.last_error = Some(failure("invalid_grant", 30));
        let mut flaky = user("erin", TokenStatus::RefreshFailed, Some(Duration::hours(1)));
        flaky.last_error = Some(failure("temporarily_unavailable", 5));
        let mut shared_token = shared(TokenStatus::Valid, Some(Duration::hours(1)));
        shared_token.provider_asked_at = Some(now() - Duration::minutes(20));
        shared_token.last_error = None;
        let users = [
            user("alice", TokenStatus::Valid, Some(Duration::hours(1))),
            user("bob", TokenStatus::Valid, Some(Duration::minutes(3))),
            asked_late,
            refused,
            flaky,
            user("frank", TokenStatus::Expired, None),
            // Listed with the users by the store; counted as the shared token only.
            shared_token.clone(),
        ];
        let health = TokenHealth::summarize(Some(&shared_token), &users, true, now());
        assert_eq!(
            health.user_tokens,
            UserTokenCounts {
                total: 6,
                valid: 2,
                expiring_soon: 1,
                expired: 1,
                refresh_failing: 1,
                grant_ending: 0,
                needs_reauthorization: 1,
                needs_attention: 3,
                complete: true,
            }
        );
        assert_eq!(health.shared.status, TokenHealthStatus::Valid);
        assert_eq!(health.shared.last_error, None);
        assert_eq!(
            health.shared.last_refresh_at,
            Some(now() - Duration::minutes(20))
        );
        // The latest of each across all tokens.
        assert_eq!(health.last_refresh_at, Some(now() - Duration::minutes(2)));
        assert_eq!(
            health.last_error.map(|e| e.code),
            Some("temporarily_unavailable".to_owned())
        );
    }

    #[test]
    fn an_incomplete_count_says_so() {
        let users = [user("alice", TokenStatus::Valid, None)];
        let health = TokenHealth::summarize(None, &users, false, now());
        assert!(!health.user_tokens.complete);
        assert_eq!(health.user_tokens.total, 1);
        assert_eq!(health.shared.status, TokenHealthStatus::NotAuthorized);
    }

    #[test]
    fn a_new_connection_has_nothing_to_report() {
        let health = TokenHealth::without_tokens();
        assert_eq!(health.shared.status, TokenHealthStatus::NotAuthorized);
        assert_eq!(
            health.user_tokens,
            UserTokenCounts {
                complete: true,
                ..UserTokenCounts::default()
            }
        );
        assert_eq!(health.last_refresh_at, None);
        assert_eq!(health.last_error, None);
    }

    #[test]
    fn the_wire_shape_is_the_documented_one_and_carries_no_token_data() {
        let mut token = shared(TokenStatus::Valid, Some(Duration::hours(1)));
        token.scope = Some("openid api".into());
        token.last_error = Some(failure("server_error", 1));
        let health = TokenHealth::summarize(Some(&token), [&token], true, now());
        let value = serde_json::to_value(&health).unwrap();
        let keys = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let set =
            |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
        assert_eq!(
            keys(&value),
            set(&["shared", "user_tokens", "last_refresh_at", "last_error"])
        );
        assert_eq!(
            keys(&value["shared"]),
            set(&[
                "status",
                "expires_at",
                "last_refresh_at",
                "last_error",
                "grant_ends_at"
            ])
        );
        assert_eq!(
            keys(&value["user_tokens"]),
            set(&[
                "total",
                "valid",
                "expiring_soon",
                "expired",
                "refresh_failing",
                "grant_ending",
                "needs_reauthorization",
                "needs_attention",
                "complete"
            ])
        );
        assert_eq!(keys(&value["last_error"]), set(&["code", "message", "at"]));
        assert_eq!(value["shared"]["status"], "refresh_failing");
        assert_eq!(value["user_tokens"]["total"], 0);
        let text = value.to_string();
        assert!(!text.contains("openid"), "{text}");
        assert!(!text.contains("Bearer"), "{text}");
    }
}
