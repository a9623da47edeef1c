//! The OAuth test peer: `oidc-provider` (an independently written, certified authorization
//! server) run by node from `tests/peers/oidc`, one instance per test on a free loopback port,
//! stopped when the test drops it or the test binary exits (it exits when its stdin closes).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::workspace_root;

/// The confidential clients' secret: full of characters reserved in URLs and in Basic
/// credentials, so credentials that are not form-URL-encoded first (RFC 6749 §2.3.1) fail.
pub const CLIENT_SECRET: &str = "s3cr:t+/=%&x?#y";
pub const PASSWORD_USER: &str = "alice";
pub const PASSWORD_SECRET: &str = "wonderland";
/// Where the peer sends the browser back: Keyport's callback. Nothing needs to listen there
/// for flow tests; the test reads the redirect and hands its query to Keyport.
pub const CALLBACK_URL: &str = "http://127.0.0.1:8080/oauth/callback";
/// The Keyport console's sign-in client (PKCE required), present with
/// [`PeerOptions::console_redirect_uri`]; its secret is [`CLIENT_SECRET`].
pub const CONSOLE_CLIENT_ID: &str = "keyport-console";
/// The claim the peer lists roles in, in the console client's ID tokens only.
pub const ROLES_CLAIM: &str = "roles";

#[derive(Debug, Default, Clone)]
pub struct PeerOptions {
    pub access_token_ttl: Option<u64>,
    /// A public JWKS for the `keyport-jwt` client (`private_key_jwt`).
    pub jwt_client_jwks: Option<String>,
    pub redirect_uri: Option<String>,
    /// A person signs in and consents on the peer's pages (`CONSENT_PAGES=1`), in a browser;
    /// off, the peer logs in and consents headlessly at once.
    pub consent_pages: bool,
    /// Where the console's client sends people back (its `/console/signin/callback`); the
    /// client exists only when set.
    pub console_redirect_uri: Option<String>,
}

pub struct OidcPeer {
    pub issuer: String,
    request_log: PathBuf,
    child: Child,
    _stdin: ChildStdin,
    _dir: tempfile::TempDir,
}

impl OidcPeer {
    pub fn start(options: PeerOptions) -> OidcPeer {
        let peer_dir = workspace_root().join("tests/peers/oidc");
        assert!(
            peer_dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed in {}: run scripts/install-test-peers (the README's test command does)",
            peer_dir.display()
        );
        let dir = tempfile::tempdir().expect("temporary folder");
        let request_log = dir.path().join("requests.jsonl");
        let mut command = Command::new("node");
        command
            .arg(peer_dir.join("server.mjs"))
            .current_dir(&peer_dir)
            .env("PORT", "0")
            .env("REQUEST_LOG", &request_log)
            .env(
                "REDIRECT_URIS",
                options.redirect_uri.as_deref().unwrap_or(CALLBACK_URL),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(ttl) = options.access_token_ttl {
            command.env("ACCESS_TOKEN_TTL", ttl.to_string());
        }
        if let Some(uri) = &options.console_redirect_uri {
            command.env("CONSOLE_REDIRECT_URIS", uri);
        }
        if let Some(jwks) = &options.jwt_client_jwks {
            command.env("JWT_CLIENT_JWKS", jwks);
        }
        if options.consent_pages {
            command.env("CONSENT_PAGES", "1");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node for the OAuth peer: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .expect("read the peer's READY line");
        let port: u16 = first_line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("the OAuth peer did not start (said {first_line:?})"));
        OidcPeer {
            issuer: format!("http://127.0.0.1:{port}"),
            request_log,
            child,
            _stdin: stdin,
            _dir: dir,
        }
    }

    /// Every token and revocation request the peer saw, as it logged them (no secret values:
    /// the method on the wire, the client, and a SHA-256 of any refresh token presented).
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.request_log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }

    /// Walks an authorization URL the way a browser would, logging in and consenting
    /// headlessly, and returns the query string the peer sent to the callback.
    pub async fn authorize_headlessly(&self, authorization_url: &str) -> String {
        self.authorize_headlessly_to(authorization_url, CALLBACK_URL)
            .await
    }

    /// As [`Self::authorize_headlessly`], stopping at `callback_url` (e.g. a running local
    /// server's own callback) and returning the query it would receive.
    pub async fn authorize_headlessly_to(
        &self,
        authorization_url: &str,
        callback_url: &str,
    ) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut url = url::Url::parse(authorization_url).expect("an absolute URL");
        for _ in 0..20 {
            if url.as_str().starts_with(callback_url) {
                return url.query().unwrap_or_default().to_owned();
            }
            let cookie_header = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let response = client
                .get(url.clone())
                .header(reqwest::header::COOKIE, cookie_header)
                .send()
                .await
                .expect("the peer answers");
            for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
                let pair = value
                    .to_str()
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    cookies.insert(name.trim().to_owned(), value.trim().to_owned());
                }
            }
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            match location {
                Some(location) if status.is_redirection() => {
                    url = url.join(&location).expect("a valid Location")
                }
                _ => panic!(
                    "the peer stopped the authorization with {status}: {}",
                    response.text().await.unwrap_or_default()
                ),
            }
        }
        panic!("too many redirects while authorizing");
    }
}

impl Drop for OidcPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh P-256 key pair: the private key as PKCS#8 PEM (for Keyport) and the public key as
/// a JWKS (for the peer's `keyport-jwt` client).
pub fn ec_key_pair() -> (String, String) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("generate a key");
    let der = pair.to_pkcs8v1().expect("PKCS#8");
    let body = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    // The public key is the uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)
    }]});
    (pem, jwks.to_string())
}
