//! A plain HTTP client for the tests that drive the local server over the wire: any method,
//! any path (sent as written, so malformed ids and queries reach the server), an optional
//! bearer token, and a body that is JSON, raw bytes with any content type, or nothing.
//! It never follows redirects and never uses a proxy: requests go to the loopback address
//! they name, nowhere else.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

/// What a request carries.
pub enum Body {
    None,
    /// Serialized with `content-type: application/json`.
    Json(Value),
    /// Sent as is, with this content type (or none).
    Raw {
        content_type: Option<&'static str>,
        bytes: Vec<u8>,
    },
}

impl Body {
    pub fn raw(content_type: &'static str, bytes: impl Into<Vec<u8>>) -> Body {
        Body::Raw {
            content_type: Some(content_type),
            bytes: bytes.into(),
        }
    }

    /// Raw bytes declared as JSON.
    pub fn json_text(text: impl Into<Vec<u8>>) -> Body {
        Body::raw("application/json", text)
    }
}

#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
}

/// One answer: status, headers and the body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Http {
    /// A client for the server at `base` (`http://127.0.0.1:<port>`).
    pub fn new(base: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }

    /// Sends `method base+path`, with `token` as a bearer credential when given.
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Body) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw {
                content_type,
                bytes,
            } => {
                let request = match content_type {
                    Some(content_type) => request.header(CONTENT_TYPE, content_type),
                    None => request,
                };
                request.body(bytes)
            }
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("the server did not answer {path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        Reply {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send("GET", path, token, Body::None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send("POST", path, token, Body::Json(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send("PATCH", path, token, Body::Json(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send("DELETE", path, token, Body::None).await
    }
}

impl Reply {
    /// The body as JSON; panics (naming `what`) when it is not.
    pub fn json_for(&self, what: &str) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "{what}: the body is not JSON ({e}); status {}: {:?}",
                self.status, self.text
            )
        })
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts the status and returns the JSON body.
    pub fn expect_json(&self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: status; body {:?}", self.text);
        assert!(
            self.content_type().starts_with("application/json"),
            "{what}: content type {:?}; body {:?}",
            self.content_type(),
            self.text
        );
        self.json_for(what)
    }

    /// Asserts Keyport's error shape: this status, a JSON body whose `error` and `message`
    /// are strings (a non-empty snake_case code and a sentence). Returns the body.
    pub fn expect_error(&self, status: u16, what: &str) -> Value {
        let body = self.expect_json(status, what);
        let code = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: `error` is not a string in {:?}", self.text));
        assert!(
            !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{what}: `error` is not a snake_case code: {code:?}"
        );
        let message = body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: `message` is not a string in {:?}", self.text));
        assert!(!message.trim().is_empty(), "{what}: an empty message");
        body
    }

    /// As [`Self::expect_error`], also checking the code.
    pub fn expect_error_code(&self, status: u16, code: &str, what: &str) -> Value {
        let body = self.expect_error(status, what);
        assert_eq!(
            body["error"], code,
            "{what}: error code; body {:?}",
            self.text
        );
        body
    }
}
