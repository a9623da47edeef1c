//! Starting an authorization (the URL a person visits) and finishing it at the callback.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::access::OwnerRequest;
use super::{Keyport, ServiceError, require_enabled};
use crate::crypto::constant_time_eq;
use crate::domain::{
    AuditAction, AwaitedGrant, Connection, ConnectionId, GrantType, Owner, PendingAuthorization,
    Principal, StateToken, UrlPolicy, ValidationError,
};
use crate::oauth::{
    CallbackOutcome, CallbackParams, ExpectedIdToken, IdTokenError, IdTokenSubject, OAuthError,
    TokenGrant, callback_values, protocol_of, unverified_subject, verify_front_channel,
};
use crate::ports::TokenKey;

pub struct AuthorizationStarted {
    pub authorization_url: Url,
    /// The `state` in the URL; returned so a client can correlate the callback.
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for AuthorizationStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationStarted")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the callback answers: the grant is held until the principal who started the
/// authorization confirms it with `completion` (`POST /oauth/complete`).
pub struct AuthorizationAwaitingConfirmation {
    pub connection_id: ConnectionId,
    pub owner: Owner,
    pub completion: StateToken,
    pub expires_at: DateTime<Utc>,
    /// Where to send the browser now, if the authorization was started with an allowed one.
    pub redirect_after: Option<String>,
}

impl fmt::Debug for AuthorizationAwaitingConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationAwaitingConfirmation")
            .field("connection_id", &self.connection_id)
            .field("owner", &self.owner)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A confirmed authorization: whose slot of which connection now holds the grant.
#[derive(Debug, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthorizationCompleted {
    pub connection_id: ConnectionId,
    pub owner: Owner,
}

impl Keyport {
    pub async fn start_authorization(
        &self,
        principal: &Principal,
        id: &ConnectionId,
        owner: OwnerRequest,
        redirect_after: Option<&str>,
    ) -> Result<AuthorizationStarted, ServiceError> {
        let connection = self.load_connection(id).await?;
        let owner = self
            .access
            .authorization_owner(principal, &connection, owner);
        let owner = self.audit_denial(principal, id, owner).await?;
        require_enabled(&connection)?;
        let redirect_after = redirect_after
            .map(|url| self.check_redirect(url))
            .transpose()?;
        let state = StateToken::generate();
        let start = self
            .oauth
            .start_authorization(&connection, &state)
            .map_err(|e| match e {
                OAuthError::Configuration(reason) => {
                    ServiceError::Invalid(ValidationError::new("grant_type", reason))
                }
                other => ServiceError::Provider(other),
            })?;
        let now = Utc::now();
        let expires_at = now + self.settings.pending_lifetime;
        let pending = PendingAuthorization {
            connection_id: connection.id.clone(),
            owner,
            requested_by: principal.subject.clone(),
            pkce_verifier: start.pkce_verifier,
            nonce: start.nonce,
            redirect_after,
            created_at: now,
            expires_at,
            awaiting_confirmation: None,
        };
        self.store.put_pending(&state, &pending).await?;
        Ok(AuthorizationStarted {
            authorization_url: start.url,
            state: state.expose_secret().to_owned(),
            expires_at,
        })
    }

    /// The callback: exchanges the code from the raw query string, and holds the grant for
    /// the principal who started the authorization to confirm. The `state` is taken (deleted)
    /// first, so it works once whatever happens next.
    pub async fn complete_authorization(
        &self,
        query: &str,
    ) -> Result<AuthorizationAwaitingConfirmation, ServiceError> {
        self.complete(query, ResponseMode::Query).await
    }

    /// The callback of a hybrid-flow connection: the form the provider had the browser post
    /// (`code`, `id_token`, `state`, or an error). The ID token is verified, and must bind
    /// the code by its `c_hash`, before the code is exchanged; then as
    /// [`Self::complete_authorization`].
    pub async fn complete_form_post_authorization(
        &self,
        form: &str,
    ) -> Result<AuthorizationAwaitingConfirmation, ServiceError> {
        self.complete(form, ResponseMode::FormPost).await
    }

    async fn complete(
        &self,
        query: &str,
        mode: ResponseMode,
    ) -> Result<AuthorizationAwaitingConfirmation, ServiceError> {
        let params = CallbackParams::parse(query)?;
        let mut pending = self
            .store
            .take_pending(&params.state, Utc::now())
            .await?
            .ok_or(ServiceError::InvalidState)?;
        // A completion value is not a state: its record already holds a grant.
        if pending.awaiting_confirmation.is_some() {
            return Err(ServiceError::InvalidState);
        }
        let connection = self.load_connection(&pending.connection_id).await?;
        require_enabled(&connection)?;
        // A hybrid connection's code is only good with its ID token, which comes by form post;
        // any other connection's answer comes in the query.
        let hybrid = connection.grant_type == GrantType::AuthorizationCodeHybrid;
        let expected = if hybrid {
            ResponseMode::FormPost
        } else {
            ResponseMode::Query
        };
        if mode != expected {
            self.audit(
                &connection.id,
                AuditAction::TokenFailed,
                pending.requested_by.as_str(),
                Some(&pending.owner),
                Some("authorization: answered in the wrong response mode"),
            )
            .await;
            return Err(ServiceError::WrongResponseMode {
                expected: expected.as_str(),
                received: mode.as_str(),
            });
        }
        // RFC 9207 §2.4: where the server promises `iss`, a response without it is refused
        // like one from another issuer (it may come from a mix-up attacker's server).
        // An answer with an ID token names its issuer there instead (RFC 9207 §2.4): a hybrid
        // code is refused below unless its ID token is the issuer's.
        let issuer_in_id_token = hybrid && matches!(params.outcome, CallbackOutcome::Code(_));
        if params.iss.is_none() && connection.callback_iss_required && !issuer_in_id_token {
            self.audit(
                &connection.id,
                AuditAction::TokenFailed,
                pending.requested_by.as_str(),
                Some(&pending.owner),
                Some("authorization: iss missing"),
            )
            .await;
            return Err(ServiceError::IssuerMissing);
        }
        if let (Some(received), Some(expected)) = (&params.iss, &connection.issuer)
            && !same_issuer(received, expected.as_str())
        {
            self.audit(
                &connection.id,
                AuditAction::TokenFailed,
                pending.requested_by.as_str(),
                Some(&pending.owner),
                Some("authorization: issuer_mismatch"),
            )
            .await;
            return Err(ServiceError::IssuerMismatch {
                received: received.clone(),
            });
        }
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: pending.owner.clone(),
        };
        let code = match params.outcome {
            CallbackOutcome::Code(code) => code,
            CallbackOutcome::Error { error, description } => {
                self.audit(
                    &connection.id,
                    AuditAction::TokenFailed,
                    pending.requested_by.as_str(),
                    Some(&key.owner),
                    Some("authorization: the provider refused it"),
                )
                .await;
                return Err(ServiceError::AuthorizationDenied {
                    error,
                    description,
                    connection_id: connection.id,
                    redirect_after: pending.redirect_after,
                });
            }
        };
        // The provider's values for the API calls that follow (QuickBooks' realmId), checked
        // before the code is spent.
        let callback_values = match callback_values(query, protocol_of(&connection)) {
            Ok(values) => values,
            Err(invalid) => {
                self.audit(
                    &connection.id,
                    AuditAction::TokenFailed,
                    pending.requested_by.as_str(),
                    Some(&key.owner),
                    Some("authorization: a callback value is malformed"),
                )
                .await;
                return Err(invalid.into());
            }
        };
        let front_channel = if hybrid {
            let verified = self
                .front_channel_id_token(&connection, &pending, params.id_token.as_ref(), &code)
                .await;
            if let Err(error) = &verified {
                let detail = match error {
                    ServiceError::IdTokenRejected(why) => {
                        format!("authorization: ID token refused, {why}")
                    }
                    _ => "authorization: the issuer's keys are unavailable".to_owned(),
                };
                self.audit(
                    &connection.id,
                    AuditAction::TokenFailed,
                    pending.requested_by.as_str(),
                    Some(&key.owner),
                    Some(&detail),
                )
                .await;
            }
            Some(verified?)
        } else {
            None
        };
        let credentials = self.credentials(&connection).await?;
        let exchanged = self
            .oauth
            .exchange_code(
                &connection,
                &credentials,
                &code,
                pending.pkce_verifier.take(),
            )
            .await;
        let mut grant = self.check_client(&connection, exchanged)?;
        grant.secrets.extra.extend(callback_values);
        if let Some(nonce) = &pending.nonce {
            check_nonce(&grant, nonce)?;
        }
        if let Some(front_channel) = &front_channel
            && let Some(id_token) = &grant.secrets.id_token
            && unverified_subject(id_token).as_ref() != Some(front_channel)
        {
            // Two answers about two people: keep neither (OpenID Connect Core §3.3.3.6).
            let _ = self
                .oauth
                .revoke(&connection, &credentials, &grant.secrets)
                .await;
            self.audit(
                &connection.id,
                AuditAction::TokenFailed,
                pending.requested_by.as_str(),
                Some(&key.owner),
                Some("authorization: the token endpoint's ID token names someone else"),
            )
            .await;
            return Err(ServiceError::Provider(OAuthError::BadResponse(
                "the token endpoint's ID token names another issuer or subject than the one beside the code".into(),
            )));
        }
        let sealed = self.seal_with_retries(&key, &grant.secrets).await?;
        let completion = StateToken::generate();
        let now = Utc::now();
        pending.awaiting_confirmation = Some(AwaitedGrant {
            token_type: grant.token_type,
            scope: grant.scope,
            expires_at: grant.expires_at,
            sealed,
            issued_for: connection.destination_fingerprint(),
        });
        pending.created_at = now;
        pending.expires_at = now + self.settings.pending_lifetime;
        self.store
            .put_pending(&completion.as_completion(), &pending)
            .await?;
        Ok(AuthorizationAwaitingConfirmation {
            connection_id: connection.id,
            owner: pending.owner,
            completion,
            expires_at: pending.expires_at,
            redirect_after: pending.redirect_after,
        })
    }

    /// `POST /oauth/complete`: places the grant a callback obtained in its owner's slot, if
    /// `principal` is the one who started the authorization. Anyone else's confirmation (a
    /// forwarded link, a phished consent) revokes the grant instead: nobody's slot gets it.
    pub async fn confirm_authorization(
        &self,
        principal: &Principal,
        completion: &str,
    ) -> Result<AuthorizationCompleted, ServiceError> {
        let completion = StateToken::parse(completion).map_err(|mut e| {
            e.field = "completion".into();
            ServiceError::Invalid(e)
        })?;
        let pending = self
            .store
            .take_pending(&completion.as_completion(), Utc::now())
            .await?
            .ok_or(ServiceError::InvalidState)?;
        let Some(awaited) = pending.awaiting_confirmation else {
            return Err(ServiceError::InvalidState);
        };
        let connection = self.load_connection(&pending.connection_id).await?;
        let key = TokenKey {
            connection_id: connection.id.clone(),
            owner: pending.owner.clone(),
        };
        let grant = TokenGrant {
            secrets: self.cipher.open_token(&key, &awaited.sealed).await?,
            token_type: awaited.token_type,
            expires_at: awaited.expires_at,
            scope: awaited.scope,
        };
        // The connection moved while the grant waited: it belongs to the old destination,
        // where nothing is sent any more.
        if awaited.issued_for != connection.destination_fingerprint() {
            return Err(ServiceError::Conflict(
                "the connection's endpoints or client changed after this authorization; start it again".into(),
            ));
        }
        let same_principal = constant_time_eq(
            principal.subject.as_str().as_bytes(),
            pending.requested_by.as_str().as_bytes(),
        );
        if !same_principal {
            let revoked = match self.credentials(&connection).await {
                Ok(credentials) => self
                    .oauth
                    .revoke(&connection, &credentials, &grant.secrets)
                    .await
                    .unwrap_or(false),
                Err(_) => false,
            };
            self.audit(
                &connection.id,
                AuditAction::TokenFailed,
                principal.subject.as_str(),
                Some(&key.owner),
                Some(if revoked {
                    "authorization confirmed by someone other than who started it: grant revoked"
                } else {
                    "authorization confirmed by someone other than who started it: grant discarded"
                }),
            )
            .await;
            return Err(ServiceError::Forbidden(
                "this authorization was started by someone else: its grant was discarded and revoked at the provider".into(),
            ));
        }
        require_enabled(&connection)?;
        self.save_new_grant(&connection, &key, grant).await?;
        self.audit(
            &connection.id,
            AuditAction::TokenAuthorized,
            principal.subject.as_str(),
            Some(&key.owner),
            None,
        )
        .await;
        Ok(AuthorizationCompleted {
            connection_id: connection.id,
            owner: pending.owner,
        })
    }

    /// Verifies the hybrid answer's ID token against the connection's issuer and client and
    /// this authorization's nonce, and that its `c_hash` is this code's.
    async fn front_channel_id_token(
        &self,
        connection: &Connection,
        pending: &PendingAuthorization,
        id_token: Option<&SecretString>,
        code: &str,
    ) -> Result<IdTokenSubject, ServiceError> {
        let id_token = id_token.ok_or(ServiceError::IdTokenRejected(
            "the answer carries no ID token",
        ))?;
        let (Some(issuer), Some(nonce)) = (&connection.issuer, &pending.nonce) else {
            return Err(ServiceError::IdTokenRejected(
                "the connection has no issuer, or the authorization no nonce, to check it with",
            ));
        };
        let expected = ExpectedIdToken {
            issuer,
            client_id: &connection.client_id,
            nonce,
            code,
        };
        verify_front_channel(self.oauth.http(), id_token, &expected)
            .await
            .map_err(|error| match error {
                IdTokenError::Rejected(why) => ServiceError::IdTokenRejected(why),
                IdTokenError::Keys(provider) => ServiceError::Provider(provider),
            })
    }

    fn check_redirect(&self, value: &str) -> Result<String, ServiceError> {
        // Keyport's own console (at the callback's origin) is always a place to go back to.
        let own_origin = self.oauth.callback_url().origin();
        if let Ok(url) = Url::parse(value)
            && url.origin() == own_origin
            && url.path().starts_with("/console/")
            && url.username().is_empty()
        {
            return Ok(url.into());
        }
        redirect_target(
            value,
            self.settings.url_policy,
            &self.settings.redirect_allow_list,
        )
        .map_err(ServiceError::Invalid)
    }
}

/// Where a browser may go once Keyport holds its grant: an allowed host over https (or http in
/// local development), never an open redirect; or a command-line client's listener on the
/// person's own machine, http to a loopback address on any port (RFC 8252 §7.3, as native
/// apps receive OAuth redirects). What that listener receives is a completion value only the
/// principal who started the authorization can use.
fn redirect_target(
    value: &str,
    policy: UrlPolicy,
    allow_list: &std::collections::BTreeSet<String>,
) -> Result<String, ValidationError> {
    let refuse = |why: &str| ValidationError::new("redirect_after", why);
    let url = Url::parse(value).map_err(|_| refuse("is not an absolute URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    if url.scheme() == "http" && loopback && url.username().is_empty() {
        return Ok(url.into());
    }
    let secure = matches!(
        (url.scheme(), policy),
        ("https", _) | ("http", UrlPolicy::LocalDevelopment)
    );
    if !secure {
        return Err(refuse(
            "must use https (or http to a loopback address such as 127.0.0.1, for a client on the person's own machine)",
        ));
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    if !allow_list.contains(&host) {
        return Err(refuse(
            "is not on this installation's allow-list of redirect hosts (KEYPORT_REDIRECT_ALLOW_LIST)",
        ));
    }
    Ok(url.into())
}

/// How the provider's answer reached the callback.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    /// `GET /oauth/callback?code=…`
    Query,
    /// `POST /oauth/callback` with a form (OpenID Connect Form Post Response Mode).
    FormPost,
}

impl ResponseMode {
    fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Query => "query (GET)",
            ResponseMode::FormPost => "form post (POST)",
        }
    }
}

fn same_issuer(received: &str, expected: &str) -> bool {
    received.trim_end_matches('/') == expected.trim_end_matches('/')
}

/// The id token came straight from the token endpoint over TLS, so its signature need not be
/// checked here (OpenID Connect Core §3.1.3.7); its nonce must still be the one we sent.
fn check_nonce(grant: &TokenGrant, expected: &str) -> Result<(), ServiceError> {
    let Some(id_token) = &grant.secrets.id_token else {
        return Ok(());
    };
    let claims = id_token
        .expose_secret()
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok());
    let nonce = claims
        .as_ref()
        .and_then(|c| c.get("nonce"))
        .and_then(|n| n.as_str());
    match nonce {
        Some(nonce) if constant_time_eq(nonce.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ServiceError::Provider(OAuthError::BadResponse(
            "the id token's nonce does not match the authorization request".into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_go_to_allowed_hosts_or_a_loopback_listener_only() {
        let allowed: std::collections::BTreeSet<String> = ["app.example.com".to_owned()].into();
        let strict = UrlPolicy::Production;
        for ok in [
            "https://app.example.com/connected",
            "http://127.0.0.1:53117/cli",
            "http://[::1]:4000/",
        ] {
            assert!(redirect_target(ok, strict, &allowed).is_ok(), "{ok}");
        }
        for (refused, why) in [
            ("https://evil.example.net/", "allow-list"),
            ("http://app.example.com/", "must use https"),
            ("http://localhost:8080/", "must use https"),
            ("http://user@127.0.0.1:8080/", "must use https"),
            ("javascript:alert(1)", "must use https"),
            ("/relative", "absolute"),
        ] {
            let error = redirect_target(refused, strict, &allowed).expect_err(refused);
            assert_eq!(error.field, "redirect_after");
            assert!(error.to_string().contains(why), "{refused}: {error}");
        }
        assert!(
            redirect_target(
                "http://app.example.com/",
                UrlPolicy::LocalDevelopment,
                &allowed
            )
            .is_ok()
        );
    }
}
