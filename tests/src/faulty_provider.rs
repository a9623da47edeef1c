//! A tiny OAuth token endpoint on loopback that fails on purpose: the test scripts the answer
//! to each successive token request (tokens with a rotated refresh token, a 5xx, a 429 with
//! `Retry-After`, a hang, a closed connection, `invalid_grant`) and reads back every request
//! it got. Plain HTTP/1.1 over a raw socket, so that "close without answering" and "never
//! answer" are exactly that. Every answer closes the connection, so each attempt Keyport makes
//! is one connection and one recorded request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Tokens the provider hands out: a new access token and a new (rotated) refresh token.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
}

impl Tokens {
    /// Unique, recognisable tokens valid for an hour.
    pub fn fresh() -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self {
            access_token: format!("faulty-at-{unique}"),
            refresh_token: Some(format!("faulty-rt-{unique}")),
            expires_in: 3600,
        }
    }

    /// The refresh token, which [`Tokens::fresh`] always sets.
    pub fn refresh(&self) -> &str {
        self.refresh_token.as_deref().expect("a refresh token")
    }
}

/// What the provider does with one token request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with these tokens.
    Tokens(Tokens),
    /// This status (500, 502, 503, …) with a JSON error body and no `Retry-After`.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`.
    RateLimited { retry_after_seconds: u64 },
    /// No answer at all until the test calls [`FaultyProvider::release_hung`] (or the client
    /// gives up and hangs up); then the connection is closed.
    Hang,
    /// Reads the request and closes the connection without a byte of answer.
    Close,
    /// 400 `{"error": "invalid_grant"}`.
    InvalidGrant,
    /// 400 `{"error": "invalid_client"}`: the client secret is not (or no longer) accepted.
    InvalidClient,
    /// Hands control to the test first (see [`FaultyProvider::paused`]) and gives the inner
    /// answer once the test resumes it.
    AfterTest(Box<Answer>),
}

impl Answer {
    pub fn after_test(self) -> Answer {
        Answer::AfterTest(Box::new(self))
    }
}

/// One request the token endpoint received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub grant_type: String,
    pub refresh_token: Option<String>,
    pub code: Option<String>,
}

/// A request held by an [`Answer::AfterTest`] until the test calls [`Paused::resume`].
pub struct Paused {
    pub request: TokenRequest,
    resume: oneshot::Sender<()>,
}

impl Paused {
    pub fn resume(self) {
        let _ = self.resume.send(());
    }
}

struct Shared {
    script: Mutex<VecDeque<Answer>>,
    otherwise: Mutex<Answer>,
    requests: Mutex<Vec<TokenRequest>>,
    /// Every request to any path, head and body as text.
    received: Mutex<Vec<String>>,
    paused: mpsc::UnboundedSender<Paused>,
    release: watch::Sender<bool>,
}

pub struct FaultyProvider {
    /// `http://127.0.0.1:<port>/token`
    pub token_url: String,
    /// `http://127.0.0.1:<port>/revoke`: answers 200 to every revocation (RFC 7009 §2.2).
    pub revocation_url: String,
    /// `http://127.0.0.1:<port>/authorize` (nothing answers there: the tests complete
    /// authorizations by handing Keyport the callback query themselves).
    pub authorization_url: String,
    shared: Arc<Shared>,
    paused: tokio::sync::Mutex<mpsc::UnboundedReceiver<Paused>>,
    accept: JoinHandle<()>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultyProvider {
    /// Listens on a free loopback port. Unscripted requests get a 500 until
    /// [`FaultyProvider::otherwise`] says otherwise.
    pub async fn start() -> FaultyProvider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address");
        let (paused_tx, paused_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(VecDeque::new()),
            otherwise: Mutex::new(Answer::Status(500)),
            requests: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            paused: paused_tx,
            release: watch::channel(false).0,
        });
        let accept = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        });
        FaultyProvider {
            token_url: format!("http://{addr}/token"),
            revocation_url: format!("http://{addr}/revoke"),
            authorization_url: format!("http://{addr}/authorize"),
            shared,
            paused: tokio::sync::Mutex::new(paused_rx),
            accept,
        }
    }

    /// Queues the answers to the next requests, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) -> &Self {
        lock(&self.shared.script).extend(answers);
        self
    }

    /// The answer to every request once the script is spent.
    pub fn otherwise(&self, answer: Answer) -> &Self {
        *lock(&self.shared.otherwise) = answer;
        self
    }

    /// Every token request received so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Everything that reached this listener on any path (request lines, headers, bodies),
    /// as one text: what a leak check searches.
    pub fn everything_received(&self) -> String {
        lock(&self.shared.received).join("\n")
    }

    /// How many requests reached the revocation endpoint.
    pub fn revocations(&self) -> Vec<String> {
        lock(&self.shared.received)
            .iter()
            .filter(|request| request.starts_with("POST /revoke "))
            .cloned()
            .collect()
    }

    /// Waits for the next request an [`Answer::AfterTest`] holds.
    pub async fn paused(&self) -> Paused {
        self.paused
            .lock()
            .await
            .recv()
            .await
            .expect("the provider is running")
    }

    /// Lets every hung request go: their connections are closed unanswered.
    pub fn release_hung(&self) {
        self.shared.release.send_replace(true);
    }
}

impl Drop for FaultyProvider {
    fn drop(&mut self) {
        self.release_hung();
        self.accept.abort();
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some((head, body)) = read_request(&mut stream).await else {
        return;
    };
    lock(&shared.received).push(format!("{head}{}", String::from_utf8_lossy(&body)));
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    if path == "/revoke" {
        respond(&mut stream, 200, &[], "").await;
        return;
    }
    if path != "/token" {
        respond(&mut stream, 404, &[], "{\"error\":\"not_found\"}").await;
        return;
    }
    let mut request = TokenRequest {
        grant_type: String::new(),
        refresh_token: None,
        code: None,
    };
    for (name, value) in url::form_urlencoded::parse(&body) {
        match &*name {
            "grant_type" => request.grant_type = value.into_owned(),
            "refresh_token" => request.refresh_token = Some(value.into_owned()),
            "code" => request.code = Some(value.into_owned()),
            _ => {}
        }
    }
    lock(&shared.requests).push(request.clone());
    let scripted = lock(&shared.script).pop_front();
    let mut answer = scripted.unwrap_or_else(|| lock(&shared.otherwise).clone());
    while let Answer::AfterTest(then) = answer {
        let (resume, resumed) = oneshot::channel();
        if shared
            .paused
            .send(Paused {
                request: request.clone(),
                resume,
            })
            .is_err()
        {
            return;
        }
        if resumed.await.is_err() {
            return;
        }
        answer = *then;
    }
    match answer {
        Answer::Tokens(tokens) => {
            let mut body = serde_json::json!({
                "access_token": tokens.access_token,
                "token_type": "Bearer",
                "expires_in": tokens.expires_in,
            });
            if let Some(refresh_token) = tokens.refresh_token {
                body["refresh_token"] = refresh_token.into();
            }
            respond(&mut stream, 200, &[], &body.to_string()).await;
        }
        Answer::Status(status) => {
            respond(&mut stream, status, &[], "{\"error\":\"server_error\"}").await;
        }
        Answer::RateLimited {
            retry_after_seconds,
        } => {
            let retry_after = retry_after_seconds.to_string();
            respond(
                &mut stream,
                429,
                &[("Retry-After", &retry_after)],
                "{\"error\":\"slow_down\"}",
            )
            .await;
        }
        Answer::Hang => {
            let mut release = shared.release.subscribe();
            let mut byte = [0u8; 1];
            // Until the test lets go, or the client gives up and closes its end.
            tokio::select! {
                _ = release.wait_for(|released| *released) => {}
                _ = stream.read(&mut byte) => {}
            }
        }
        Answer::Close => {}
        Answer::InvalidGrant => {
            respond(
                &mut stream,
                400,
                &[],
                "{\"error\":\"invalid_grant\",\"error_description\":\"the refresh token is not valid\"}",
            )
            .await;
        }
        Answer::InvalidClient => {
            respond(
                &mut stream,
                400,
                &[],
                "{\"error\":\"invalid_client\",\"error_description\":\"client authentication failed\"}",
            )
            .await;
        }
        Answer::AfterTest(_) => unreachable!("unwrapped above"),
    }
}

/// Reads one request: its head (request line and headers) and body. `None` if the client
/// closed first.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    lines.next()?.split(' ').nth(1)?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Some((head, buffer[head_end..head_end + length].to_vec()))
}

async fn respond(stream: &mut TcpStream, status: u16, headers: &[(&str, &str)], body: &str) {
    let mut out = format!(
        "HTTP/1.1 {status} Faulty\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}
