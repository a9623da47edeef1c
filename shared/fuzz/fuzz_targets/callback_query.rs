//! The query string of `GET /oauth/callback`, as the callback route hands it to Keyport:
//! `CallbackParams::parse`, and for a refused query the page the route answers with.
//!
//! Beyond "no panic": a parsed callback re-serialises and re-parses to the same callback; the
//! refusal page is a 400 whose text is escaped and does not depend on the `code` and `state`
//! values (secret), only on whether they are acceptable.
#![no_main]

use keyport_shared::domain::StateToken;
use keyport_shared::fuzzing::callback_refusal;
use keyport_shared::oauth::{CallbackOutcome, CallbackParams};
use libfuzzer_sys::fuzz_target;
use url::form_urlencoded;

const SECRET_PARAMS: [&str; 2] = ["code", "state"];

fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn query(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Another value that `CallbackParams::parse` judges as it judges `value`.
fn stand_in(name: &str, value: &str) -> String {
    if value.is_empty() || value.len() > 4096 || value.chars().any(char::is_control) {
        return value.to_owned();
    }
    if name == "state" && StateToken::parse(value).is_ok() {
        return StateToken::generate().expose_secret().to_owned();
    }
    // Not base64url, so never a state; printable, and as long.
    "!".repeat(value.len())
}

fn check_parsed(params: &CallbackParams) {
    let state = params.state.expose_secret();
    assert!(
        StateToken::parse(state).is_ok(),
        "a state that does not parse again"
    );
    let mut again = vec![("state".to_owned(), state.to_owned())];
    match &params.outcome {
        CallbackOutcome::Code(code) => {
            assert!(!code.is_empty() && code.len() <= 4096);
            assert!(!code.chars().any(char::is_control));
            again.push(("code".into(), code.clone()));
        }
        CallbackOutcome::Error { error, description } => {
            assert!(!error.is_empty() && !error.chars().any(char::is_control));
            again.push(("error".into(), error.clone()));
            if let Some(description) = description {
                assert!(description.chars().count() <= 300);
                again.push(("error_description".into(), description.clone()));
            }
        }
    }
    if let Some(iss) = &params.iss {
        again.push(("iss".into(), iss.clone()));
    }
    let reparsed = CallbackParams::parse(&query(&again)).expect("a re-serialised callback");
    assert_eq!(format!("{params:?}"), format!("{reparsed:?}"));
    assert_eq!(reparsed.state.expose_secret(), state);
    match (&params.outcome, &reparsed.outcome) {
        (CallbackOutcome::Code(a), CallbackOutcome::Code(b)) => assert_eq!(a, b),
        (CallbackOutcome::Error { .. }, CallbackOutcome::Error { .. }) => {}
        _ => panic!("the outcome changed when re-read"),
    }
}

fn check_page(status: u16, page: &str) {
    assert_eq!(status, 400, "a refused query is a 400: {page}");
    let text = page
        .split_once("<p>")
        .and_then(|(_, rest)| rest.rsplit_once("</p>"))
        .map(|(text, _)| text)
        .expect("a page with a paragraph");
    assert!(
        !text.contains(['<', '>', '"', '\'']),
        "unescaped text: {text}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = CallbackParams::parse(raw);
    let page = callback_refusal(raw);
    match (&parsed, &page) {
        (Ok(params), None) => check_parsed(params),
        (Err(_), Some((status, page))) => check_page(*status, page),
        _ => panic!("the route and the parser disagree"),
    }
    // The same parameters, re-encoded: the same answer.
    let pairs = pairs(raw);
    let plain = query(&pairs);
    assert_eq!(
        page,
        callback_refusal(&plain),
        "re-encoding the query changed the answer"
    );
    // Other code and state values of the same kind: the same answer.
    let hidden: Vec<_> = pairs
        .iter()
        .map(|(name, value)| {
            let value = if SECRET_PARAMS.contains(&name.as_str()) {
                stand_in(name, value)
            } else {
                value.clone()
            };
            (name.clone(), value)
        })
        .collect();
    assert_eq!(
        page,
        callback_refusal(&query(&hidden)),
        "a code or state value changed the refusal"
    );
});
