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
        match self.walk(authorization_url, callback_url).await {
            Answer::Query(query) => query,
            Answer::Form(fields) => {
                panic!("the peer answered by form post: {:?}", field_names(&fields))
            }
        }
    }

    /// Walks an authorization answered by form post (OpenID Connect's `response_mode=form_post`,
    /// the hybrid flow): the last hop is the peer's auto-submitting page, whose form must post
    /// to `callback_url`. Returns its hidden inputs, decoded, in order: what a browser would
    /// post there.
    pub async fn authorize_by_form_post(
        &self,
        authorization_url: &str,
        callback_url: &str,
    ) -> Vec<(String, String)> {
        match self.walk(authorization_url, callback_url).await {
            Answer::Form(fields) => fields,
            Answer::Query(query) => {
                panic!("the peer answered in the query, not by form post: {query}")
            }
        }
    }

    async fn walk(&self, authorization_url: &str, callback_url: &str) -> Answer {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut url = url::Url::parse(authorization_url).expect("an absolute URL");
        for _ in 0..20 {
            if url.as_str().starts_with(callback_url) {
                return Answer::Query(url.query().unwrap_or_default().to_owned());
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
                _ => {
                    let page = response.text().await.unwrap_or_default();
                    // The form post response mode: a page whose form posts to the callback
                    // (200 with a code, 400 with an error).
                    if let Some((action, fields)) = form_on_page(&page)
                        && action.starts_with(callback_url)
                    {
                        return Answer::Form(fields);
                    }
                    panic!("the peer stopped the authorization with {status}: {page}")
                }
            }
        }
        panic!("too many redirects while authorizing");
    }
}

/// How the peer's answer reaches the callback.
enum Answer {
    /// Redirected, with this query.
    Query(String),
    /// Posted by the browser, with these fields.
    Form(Vec<(String, String)>),
}

fn field_names(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(name, _)| name.as_str()).collect()
}

/// The action and hidden inputs of the first `<form method="post">` on an oidc-provider page
/// (it writes `<input type="hidden" name="…" value="…"/>`, values HTML-escaped).
fn form_on_page(page: &str) -> Option<(String, Vec<(String, String)>)> {
    let form_start =
        page.find("<form method=\"post\" action=\"")? + r#"<form method="post" action=""#.len();
    let action = html_unescape(&page[form_start..form_start + page[form_start..].find('"')?]);
    let form_end = form_start + page[form_start..].find("</form>")?;
    let mut fields = Vec::new();
    let mut rest = &page[form_start..form_end];
    while let Some(at) = rest.find("<input type=\"hidden\" name=\"") {
        rest = &rest[at + r#"<input type="hidden" name=""#.len()..];
        let name_end = rest.find('"')?;
        let name = html_unescape(&rest[..name_end]);
        let value_start = rest.find("value=\"")? + "value=\"".len();
        let value_end = value_start + rest[value_start..].find('"')?;
        fields.push((name, html_unescape(&rest[value_start..value_end])));
        rest = &rest[value_end..];
    }
    Some((action, fields))
}

fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_form_post_page_gives_its_action_and_decoded_fields() {
        let page = r#"<body>
  <form method="post" action="http://127.0.0.1:8080/oauth/callback?a=1&amp;b=2">
    <input type="hidden" name="code" value="a&amp;b&#39;c"/>
<input type="hidden" name="state" value="&lt;s&gt;&quot;"/>
    <noscript><button autofocus type="submit">Continue</button></noscript>
  </form>"#;
        let (action, fields) = super::form_on_page(page).expect("a form");
        assert_eq!(action, "http://127.0.0.1:8080/oauth/callback?a=1&b=2");
        assert_eq!(
            fields,
            vec![
                ("code".to_owned(), "a&b'c".to_owned()),
                ("state".to_owned(), "<s>\"".to_owned())
            ]
        );
        assert!(super::form_on_page("<p>no form</p>").is_none());
    }
}
