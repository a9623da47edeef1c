//! Token material is never at rest in the clear, and a sealed value only opens in its own item.
//! Nor is any other secret Keyport handles in real flows, anywhere in the store.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use keyport_shared::crypto::CryptoError;
use keyport_shared::domain::{Connection, Owner, Principal, TokenSecrets};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_shared::service::{Keyport, OwnerRequest};
use keyport_tests::backends::{Backend, RawRecord};
use keyport_tests::keyport::{admin, bot, finish_authorization, keyport};
use keyport_tests::oidc::{CLIENT_SECRET, OidcPeer, PeerOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::fixtures::{key, token, user};

crate::on_both_backends!(
    tokens_are_not_stored_in_any_readable_encoding,
    a_moved_ciphertext_fails_its_integrity_check,
    no_secret_of_real_flows_is_readable_anywhere_in_the_store
);

fn secrets(access: &str, refresh: &str) -> TokenSecrets {
    TokenSecrets {
        access_token: SecretString::from(access),
        refresh_token: Some(SecretString::from(refresh)),
        id_token: None,
        extra: serde_json::Map::new(),
    }
}

/// The ways a careless store could hold a value: as is, base64 in its variants, hex, and JSON
/// or URL escaping (which leave alphanumeric values unchanged, not the client secret).
fn encodings(value: &str) -> Vec<Vec<u8>> {
    let bytes = value.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let json = serde_json::to_string(value).expect("a JSON string");
    let form: String = url::form_urlencoded::byte_serialize(bytes).collect();
    vec![
        json.trim_matches('"').as_bytes().to_vec(),
        form.into_bytes(),
        bytes.to_vec(),
        STANDARD.encode(bytes).into_bytes(),
        STANDARD_NO_PAD.encode(bytes).into_bytes(),
        URL_SAFE.encode(bytes).into_bytes(),
        URL_SAFE_NO_PAD.encode(bytes).into_bytes(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn tokens_are_not_stored_in_any_readable_encoding(backend: Backend) {
    let cipher = backend.cipher();
    let key = key(user("alice"));
    let access = "AccessTokenValue0123456789abcdefXYZ";
    let refresh = "RefreshTokenValue9876543210zyxwvuABC";
    let mut record = token(&key, None);
    record.sealed = cipher
        .seal_token(&key, &secrets(access, refresh))
        .await
        .unwrap();
    backend
        .store
        .put_token(&record, Expect::Absent)
        .await
        .unwrap();

    let raw = backend.raw_token_bytes(&key).await;
    assert!(
        contains(&raw, key.connection_id.as_str().as_bytes()),
        "the raw read found the item"
    );
    for secret in [access, refresh] {
        for encoded in encodings(secret) {
            assert!(
                !contains(&raw, &encoded),
                "{}: a token is readable at rest as {}",
                backend.name,
                String::from_utf8_lossy(&encoded)
            );
        }
    }

    // And it does come back through the cipher.
    let stored = backend.store.get_token(&key).await.unwrap().unwrap();
    let opened = backend
        .cipher()
        .open_token(&key, &stored.sealed)
        .await
        .unwrap();
    assert_eq!(opened.access_token.expose_secret(), access);
    assert_eq!(opened.refresh_token.unwrap().expose_secret(), refresh);
}

async fn a_moved_ciphertext_fails_its_integrity_check(backend: Backend) {
    let cipher = backend.cipher();
    let victim = key(Owner::Shared);
    // Same connection, another owner: the most tempting move (a user lifting the shared token).
    let thief = TokenKey {
        connection_id: victim.connection_id.clone(),
        owner: user("mallory"),
    };

    let mut victim_record = token(&victim, None);
    victim_record.sealed = cipher
        .seal_token(&victim, &secrets("victim-access", "victim-refresh"))
        .await
        .unwrap();
    backend
        .store
        .put_token(&victim_record, Expect::Absent)
        .await
        .unwrap();
    let mut thief_record = token(&thief, None);
    thief_record.sealed = cipher
        .seal_token(&thief, &secrets("thief-access", "thief-refresh"))
        .await
        .unwrap();
    let thief_record = backend
        .store
        .put_token(&thief_record, Expect::Absent)
        .await
        .unwrap();

    // Move the victim's ciphertext into the thief's item.
    let stolen = backend
        .store
        .get_token(&victim)
        .await
        .unwrap()
        .unwrap()
        .sealed;
    let mut moved = thief_record.clone();
    moved.sealed = stolen;
    backend
        .store
        .put_token(&moved, Expect::Version(thief_record.version))
        .await
        .unwrap();

    for reader in [&cipher, &backend.cipher()] {
        let sealed = backend
            .store
            .get_token(&thief)
            .await
            .unwrap()
            .unwrap()
            .sealed;
        let err = reader.open_token(&thief, &sealed).await.unwrap_err();
        assert!(
            matches!(err, CryptoError::Integrity),
            "{}: {err:?}",
            backend.name
        );
        assert!(err.to_string().contains("integrity"), "{err}");
    }
    // The victim's own item still opens.
    let sealed = backend
        .store
        .get_token(&victim)
        .await
        .unwrap()
        .unwrap()
        .sealed;
    let opened = backend.cipher().open_token(&victim, &sealed).await.unwrap();
    assert_eq!(opened.access_token.expose_secret(), "victim-access");
}

/// What the flows below handed Keyport that must never be readable at rest: (what, value).
type Secrets = Vec<(String, String)>;

/// A connection to the peer (issuer discovery), with `settings` over the defaults.
async fn create(keyport: &Keyport, peer: &OidcPeer, settings: serde_json::Value) -> Connection {
    keyport_tests::keyport::peer_connection(keyport, peer, "at-rest", settings).await
}

/// The `code` and `state` the provider sent to the callback: bearer values both.
fn callback_values(query: &str, secrets: &mut Secrets) {
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "code" || name == "state" {
            secrets.push((format!("a callback's {name}"), value.into_owned()));
        }
    }
}

/// Starts an authorization as `who` and consents at the peer; returns the callback's query.
async fn consent(
    keyport: &Keyport,
    peer: &OidcPeer,
    who: &Principal,
    connection: &Connection,
    owner: OwnerRequest,
    secrets: &mut Secrets,
) -> String {
    let started = keyport
        .start_authorization(who, &connection.id, owner, None)
        .await
        .expect("the authorization starts");
    let query = peer
        .authorize_headlessly(started.authorization_url.as_str())
        .await;
    callback_values(&query, secrets);
    query
}

/// A whole authorization: consent, the callback, the confirmation by `who`.
async fn authorize(
    keyport: &Keyport,
    peer: &OidcPeer,
    who: &Principal,
    connection: &Connection,
    owner: OwnerRequest,
    secrets: &mut Secrets,
) {
    let query = consent(keyport, peer, who, connection, owner, secrets).await;
    finish_authorization(keyport, who, &query)
        .await
        .expect("the authorization completes");
}

fn token_key(connection: &Connection, owner: Owner) -> TokenKey {
    TokenKey {
        connection_id: connection.id.clone(),
        owner,
    }
}

/// The stored token's values, decrypted through the cipher.
async fn opened_secrets(backend: &Backend, key: &TokenKey, when: &str) -> Secrets {
    let stored = backend
        .store
        .get_token(key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no token stored for {key:?}"));
    let opened = backend
        .cipher()
        .open_token(key, &stored.sealed)
        .await
        .expect("the token opens in its own item");
    let what = |kind: &str| format!("{kind} of {} {when}", key.owner);
    let mut secrets = vec![(
        what("the access token"),
        opened.access_token.expose_secret().to_owned(),
    )];
    for (kind, value) in [
        ("the refresh token", &opened.refresh_token),
        ("the id token", &opened.id_token),
    ] {
        if let Some(value) = value {
            secrets.push((what(kind), value.expose_secret().to_owned()));
        }
    }
    secrets
}

/// The scan reached every kind of record the flows wrote, so finding nothing means something.
fn assert_scan_covers_everything(backend: &Backend, records: &[RawRecord], ids: &[&Connection]) {
    let places: Vec<&str> = match backend.name {
        "embedded" => vec![
            "table connections ",
            "table tokens ",
            "table pending_authorizations ",
            "table audit_events ",
            "table secrets ",
        ],
        _ => vec!["CONN#", "TOKEN#", "STATE#", "AUDIT#"],
    };
    for place in places {
        assert!(
            records.iter().any(|r| r.place.contains(place)),
            "{}: the scan found no {place} record",
            backend.name
        );
    }
    let found = |needle: &[u8]| records.iter().any(|r| contains(&r.bytes, needle));
    for connection in ids {
        assert!(
            found(connection.id.as_str().as_bytes()),
            "{}",
            connection.id
        );
    }
    for clear in ["token_refreshed", "token_authorized", "api:read"] {
        assert!(found(clear.as_bytes()), "{}: no {clear}", backend.name);
    }
}

fn assert_nothing_readable(backend: &str, records: &[RawRecord], secrets: &Secrets, when: &str) {
    for (what, value) in secrets {
        for encoded in encodings(value) {
            if let Some(record) = records.iter().find(|r| contains(&r.bytes, &encoded)) {
                // Names where and how, never the value itself.
                panic!(
                    "{backend}, {when}: {what} is readable at rest in {} ({} bytes of encoding)",
                    record.place,
                    encoded.len()
                );
            }
        }
    }
}

async fn no_secret_of_real_flows_is_readable_anywhere_in_the_store(backend: Backend) {
    let keyport = keyport(&backend, |_| {});
    let peer = OidcPeer::start(PeerOptions::default());
    let other_secret = format!("Other-Client-Secret-{}", uuid::Uuid::new_v4().simple());
    let mut secrets: Secrets = vec![
        ("the client secret".into(), CLIENT_SECRET.into()),
        ("the other client secret".into(), other_secret.clone()),
    ];

    // Authorization code: the shared token and a user's own, then a forced refresh.
    let code = create(&keyport, &peer, serde_json::json!({})).await;
    authorize(
        &keyport,
        &peer,
        &admin(),
        &code,
        OwnerRequest::Shared,
        &mut secrets,
    )
    .await;
    authorize(
        &keyport,
        &peer,
        &bot(),
        &code,
        OwnerRequest::User,
        &mut secrets,
    )
    .await;
    let shared = token_key(&code, Owner::Shared);
    secrets.extend(opened_secrets(&backend, &shared, "before its refresh").await);
    keyport
        .force_refresh(&admin(), &code.id, OwnerRequest::Shared)
        .await
        .expect("a forced refresh");

    // Client credentials, read by a bot.
    let machine = create(
        &keyport,
        &peer,
        serde_json::json!({"grant_type": "client_credentials", "scopes": "api:read"}),
    )
    .await;
    keyport
        .access_token(&bot(), &machine.id, OwnerRequest::Shared, None)
        .await
        .expect("a client credentials token");

    // PKCE: one authorization left at the provider, one held by the callback unconfirmed.
    let pkce = create(
        &keyport,
        &peer,
        serde_json::json!({"client_id": "keyport-pkce", "grant_type": "authorization_code_pkce"}),
    )
    .await;
    let pending = keyport
        .start_authorization(&admin(), &pkce.id, OwnerRequest::Shared, None)
        .await
        .expect("the authorization starts");
    secrets.push(("a pending state".into(), pending.state.clone()));
    let query = consent(
        &keyport,
        &peer,
        &bot(),
        &pkce,
        OwnerRequest::User,
        &mut secrets,
    )
    .await;
    let held = keyport
        .complete_authorization(&query)
        .await
        .expect("the callback holds the grant");
    let completion = held.completion.expose_secret().to_owned();
    secrets.push(("a completion value".into(), completion.clone()));

    // A connection never used, whose secret only its creation handled.
    let idle = create(
        &keyport,
        &peer,
        serde_json::json!({"grant_type": "client_credentials", "client_id": "keyport-idle",
                           "client_secret": other_secret}),
    )
    .await;

    let while_held = backend.raw_everything().await;
    keyport
        .confirm_authorization(&bot(), &completion)
        .await
        .expect("the confirmation places the held grant");
    let afterwards = backend.raw_everything().await;

    // The values now stored, decrypted (the held grant's too, now that it has a slot).
    let bots = Owner::User(bot().subject);
    for key in [
        shared,
        token_key(&code, bots.clone()),
        token_key(&machine, Owner::Shared),
        token_key(&pkce, bots),
    ] {
        secrets.extend(opened_secrets(&backend, &key, "after the flows").await);
    }
    assert!(
        secrets
            .iter()
            .any(|(what, _)| what.starts_with("the id token")),
        "the flows produced an id token to look for"
    );
    assert!(
        secrets
            .iter()
            .any(|(what, _)| what.starts_with("the refresh token")),
        "the flows produced a refresh token to look for"
    );

    for (records, when) in [
        (&while_held, "while a grant was held"),
        (&afterwards, "after its confirmation"),
    ] {
        assert_scan_covers_everything(&backend, records, &[&code, &machine, &pkce, &idle]);
        assert_nothing_readable(backend.name, records, &secrets, when);
    }
}
