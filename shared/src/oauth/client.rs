//! The OAuth flows for one connection, spoken through the `oauth2` crate over Keyport's own
//! outbound HTTP client. Where the crate stops (`private_key_jwt`, scope separators, lenient
//! responses), this module extends it through its extension points — extra parameters, a
//! custom token-response type, a custom HTTP client — rather than building requests by hand.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, Client, ClientId, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, ResourceOwnerPassword, ResourceOwnerUsername, ResponseType,
    RevocationUrl, StandardRevocableToken, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::assertion::assertion_params;
use super::error::OAuthError;
use super::quirks::{adapt_request, adapt_response, protocol_of};
use super::response::{ProviderTokenResponse, TokenGrant};
use super::revocation::{check_revocation_response, revocation_request};
use std::future::Future;
use std::pin::Pin;

use crate::adapters::outbound::{OutboundError, OutboundHttp};
use crate::crypto::random_bytes;
use crate::domain::{
    ClientAuthMethod, ClientSecret, Connection, GrantType, PkceVerifier, ProviderProtocol,
    StateToken, TokenSecrets,
};

/// The `oauth2` crate's HTTP client port, served by Keyport's outbound client, with the
/// provider's protocol departures applied between the crate and the wire. A named type rather
/// than a closure keeps the request futures `Send` for every lifetime.
struct ProviderHttp<'a> {
    http: &'a OutboundHttp,
    protocol: &'a ProviderProtocol,
    /// A person's grant (and its refreshes): a nested user token is theirs to lift.
    interactive: bool,
}

impl<'a> ProviderHttp<'a> {
    fn new(http: &'a OutboundHttp, connection: &Connection) -> Self {
        Self {
            http,
            protocol: protocol_of(connection),
            interactive: connection.grant_type.is_interactive(),
        }
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp<'_> {
    type Error = OutboundError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, OutboundError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        let request = adapt_request(request, self.protocol);
        Box::pin(async move {
            let response = self.http.execute(request).await?;
            Ok(adapt_response(response, self.protocol, self.interactive))
        })
    }
}

/// Adds `params` to one of the crate's token requests, which share no trait for it.
fn with_params<R>(
    request: R,
    params: Vec<(String, SecretString)>,
    add: impl Fn(R, String, String) -> R,
) -> R {
    params.into_iter().fold(request, |request, (name, value)| {
        add(request, name, value.expose_secret().to_owned())
    })
}

type ProviderClient = Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointSet,
>;

/// Installation-wide OAuth settings.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The one callback URL registered at every provider; never taken from a request.
    pub callback_url: Url,
    /// The resource-owner password grant is forbidden by RFC 9700 §2.4; an installation may
    /// still need it for a legacy provider, and must say so.
    pub allow_password_grant: bool,
}

/// The secrets a request may need, read from the secret store by the caller.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    pub client_secret: Option<ClientSecret>,
    pub private_key: Option<ClientSecret>,
    pub password: Option<ClientSecret>,
}

/// What starting an authorization produces: the URL to send the person to, and what the
/// callback will need (kept server-side in the pending authorization).
#[derive(Debug)]
pub struct AuthorizationStart {
    pub url: Url,
    pub pkce_verifier: Option<PkceVerifier>,
    pub nonce: Option<String>,
}

pub struct OAuthClient {
    http: OutboundHttp,
    redirect_url: RedirectUrl,
    allow_password_grant: bool,
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

impl OAuthClient {
    pub fn new(http: OutboundHttp, settings: OAuthSettings) -> Self {
        Self {
            http,
            redirect_url: RedirectUrl::from_url(settings.callback_url),
            allow_password_grant: settings.allow_password_grant,
        }
    }

    pub fn http(&self) -> &OutboundHttp {
        &self.http
    }

    pub fn callback_url(&self) -> &Url {
        self.redirect_url.url()
    }

    /// The crate's client for this connection, without credentials.
    fn base_client(&self, connection: &Connection) -> ProviderClient {
        let auth_type = match connection.client_auth {
            ClientAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuthMethod::ClientSecretPost | ClientAuthMethod::PrivateKeyJwt => {
                AuthType::RequestBody
            }
        };
        Client::new(ClientId::new(connection.client_id.clone()))
            .set_auth_uri_option(
                connection
                    .authorization_url
                    .as_ref()
                    .map(|u| AuthUrl::from_url(u.as_url().clone())),
            )
            .set_token_uri(TokenUrl::from_url(connection.token_url.as_url().clone()))
            .set_revocation_url_option(
                connection
                    .revocation_url
                    .as_ref()
                    .map(|u| RevocationUrl::from_url(u.as_url().clone())),
            )
            .set_redirect_uri(self.redirect_url.clone())
            .set_auth_type(auth_type)
    }

    fn client(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
    ) -> Result<ProviderClient, OAuthError> {
        let client = self.base_client(connection);
        Ok(match connection.client_auth {
            ClientAuthMethod::PrivateKeyJwt => client,
            ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
                let secret = credentials.client_secret.as_ref().ok_or_else(|| {
                    OAuthError::Configuration(
                        "no client secret is stored for this connection".into(),
                    )
                })?;
                client
                    .set_client_secret(oauth2::ClientSecret::new(secret.expose_secret().to_owned()))
            }
        })
    }

    /// Parameters every token-endpoint request of this connection carries: the client
    /// assertion for `private_key_jwt`, RFC 8707 `resource`, `audience`, and the connection's
    /// own token parameters.
    fn token_params(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        scope: Option<&str>,
    ) -> Result<Vec<(String, SecretString)>, OAuthError> {
        let mut params: Vec<(String, SecretString)> = Vec::new();
        if let Some(scope) = scope {
            params.push(("scope".into(), SecretString::from(scope.to_owned())));
        }
        if connection.client_auth == ClientAuthMethod::PrivateKeyJwt {
            let assertion = assertion_params(
                credentials.private_key.as_ref(),
                &connection.client_id,
                connection.token_url.as_str(),
            )?;
            params.extend(assertion.map(|(name, value)| (name.to_owned(), value)));
        }
        if let Some(audience) = &connection.audience {
            params.push(("audience".into(), SecretString::from(audience.clone())));
        }
        if let Some(resource) = &connection.resource {
            params.push(("resource".into(), SecretString::from(resource.clone())));
        }
        for (name, value) in &connection.token_params {
            params.push((name.clone(), SecretString::from(value.clone())));
        }
        Ok(params)
    }

    fn requested_scope(connection: &Connection) -> Option<String> {
        (!connection.scopes.is_empty()).then(|| connection.scopes.join(&connection.scope_separator))
    }

    /// Builds the authorization URL for `state`: PKCE S256 for the PKCE and hybrid grants, a
    /// nonce when `openid` is requested, scopes joined with the provider's separator, the fixed
    /// callback; for the hybrid grant `response_type=code id_token` answered by form post.
    pub fn start_authorization(
        &self,
        connection: &Connection,
        state: &StateToken,
    ) -> Result<AuthorizationStart, OAuthError> {
        if !connection.grant_type.is_interactive() {
            return Err(OAuthError::Configuration(format!(
                "the {} grant needs no authorization in a browser",
                connection.grant_type
            )));
        }
        let client = self.base_client(connection);
        let state_value = state.expose_secret().to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state_value))
            .map_err(|_| {
                OAuthError::Configuration("the connection has no authorization URL".into())
            })?;
        if let Some(scope) = Self::requested_scope(connection) {
            request = request.add_extra_param("scope", scope);
        }
        let hybrid = connection.grant_type == GrantType::AuthorizationCodeHybrid;
        if hybrid {
            // The ID token beside the code cannot ride in a query, and a fragment never reaches
            // the server: the browser posts both to the callback.
            request = request
                .set_response_type(&ResponseType::new("code id_token".into()))
                .add_extra_param("response_mode", "form_post");
        }
        let pkce_verifier = if connection.grant_type.uses_pkce() {
            let verifier = random_token();
            let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
                verifier.clone(),
            ));
            request = request.set_pkce_challenge(challenge);
            Some(PkceVerifier::new(verifier))
        } else {
            None
        };
        let nonce = (hybrid || connection.scopes.contains("openid")).then(random_token);
        if let Some(nonce) = &nonce {
            request = request.add_extra_param("nonce", nonce.clone());
        }
        if let Some(audience) = &connection.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        if let Some(resource) = &connection.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        for (name, value) in &connection.authorization_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _) = request.url();
        Ok(AuthorizationStart {
            url,
            pkce_verifier,
            nonce,
        })
    }

    pub async fn exchange_code(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        code: &str,
        pkce_verifier: Option<PkceVerifier>,
    ) -> Result<TokenGrant, OAuthError> {
        let client = self.client(connection, credentials)?;
        let mut request = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(verifier) = pkce_verifier {
            request = request
                .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()));
        }
        let request = with_params(
            request,
            self.token_params(connection, credentials, None)?,
            |r, n, v| r.add_extra_param(n, v),
        );
        let response = request
            .request_async(&ProviderHttp::new(&self.http, connection))
            .await?;
        Ok(TokenGrant::from_response(
            response,
            Self::requested_scope(connection).as_deref(),
            Utc::now(),
        ))
    }

    pub async fn request_client_credentials(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
    ) -> Result<TokenGrant, OAuthError> {
        let client = self.client(connection, credentials)?;
        let request = client.exchange_client_credentials();
        let scope = Self::requested_scope(connection);
        let request = with_params(
            request,
            self.token_params(connection, credentials, scope.as_deref())?,
            |r, n, v| r.add_extra_param(n, v),
        );
        let response = request
            .request_async(&ProviderHttp::new(&self.http, connection))
            .await?;
        Ok(TokenGrant::from_response(
            response,
            scope.as_deref(),
            Utc::now(),
        ))
    }

    /// The legacy resource-owner password grant, only where the installation allows it.
    pub async fn request_password(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
    ) -> Result<TokenGrant, OAuthError> {
        if !self.allow_password_grant {
            return Err(OAuthError::Configuration(
                "the password grant is disabled on this installation (RFC 9700 §2.4); enable it explicitly to use it".into(),
            ));
        }
        let username = connection
            .username
            .as_deref()
            .ok_or_else(|| OAuthError::Configuration("the connection has no username".into()))?;
        let password = credentials.password.as_ref().ok_or_else(|| {
            OAuthError::Configuration("no password is stored for this connection".into())
        })?;
        let client = self.client(connection, credentials)?;
        let username = ResourceOwnerUsername::new(username.to_owned());
        let password = ResourceOwnerPassword::new(password.expose_secret().to_owned());
        let request = client.exchange_password(&username, &password);
        let scope = Self::requested_scope(connection);
        let request = with_params(
            request,
            self.token_params(connection, credentials, scope.as_deref())?,
            |r, n, v| r.add_extra_param(n, v),
        );
        let response = request
            .request_async(&ProviderHttp::new(&self.http, connection))
            .await?;
        Ok(TokenGrant::from_response(
            response,
            scope.as_deref(),
            Utc::now(),
        ))
    }

    /// Obtains a token without a person: client credentials or (if allowed) password.
    pub async fn request_unattended(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
    ) -> Result<TokenGrant, OAuthError> {
        match connection.grant_type {
            GrantType::ClientCredentials => {
                self.request_client_credentials(connection, credentials)
                    .await
            }
            GrantType::Password => self.request_password(connection, credentials).await,
            interactive => Err(OAuthError::Configuration(format!(
                "the {interactive} grant needs a person to authorize it"
            ))),
        }
    }

    /// Refreshes with `refresh_token`. The scope is not sent (the refreshed token keeps the
    /// grant's scope) unless the provider's protocol wants it named again; then it is the scope
    /// the authorization asked for, which providers accept on refresh (Microsoft documents
    /// "equivalent to or a subset of" the original request), or failing that the granted one.
    /// A response without a refresh token keeps the old one, and values kept from the callback
    /// stay with the token.
    pub async fn refresh(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        previous: &TokenSecrets,
        previous_scope: Option<&str>,
    ) -> Result<TokenGrant, OAuthError> {
        let refresh_token =
            previous
                .refresh_token
                .as_ref()
                .ok_or_else(|| OAuthError::InvalidGrant {
                    description: Some("no refresh token is stored".into()),
                })?;
        let client = self.client(connection, credentials)?;
        let refresh_token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let request = client.exchange_refresh_token(&refresh_token);
        let protocol = protocol_of(connection);
        let scope = protocol
            .refresh_sends_scope
            .then(|| Self::requested_scope(connection).or(previous_scope.map(str::to_owned)))
            .flatten();
        let request = with_params(
            request,
            self.token_params(connection, credentials, scope.as_deref())?,
            |r, n, v| r.add_extra_param(n, v),
        );
        let response = request
            .request_async(&ProviderHttp::new(&self.http, connection))
            .await?;
        let mut grant = TokenGrant::from_response(response, previous_scope, Utc::now());
        grant.keep_refresh_token_from(previous);
        grant.keep_extras_from(previous, &protocol.callback_params);
        Ok(grant)
    }

    /// Revokes the grant at the provider (RFC 7009). `Ok(false)` when the provider offers no
    /// revocation endpoint.
    pub async fn revoke(
        &self,
        connection: &Connection,
        credentials: &ClientCredentials,
        secrets: &TokenSecrets,
    ) -> Result<bool, OAuthError> {
        let Some(endpoint) = &connection.revocation_url else {
            return Ok(false);
        };
        // RFC 7009 as written: a provider's token_request_body is about its token endpoint.
        let request = revocation_request(connection, endpoint, credentials, secrets)?;
        let response = self.http.execute(request).await?;
        check_revocation_response(&response)?;
        Ok(true)
    }
}
