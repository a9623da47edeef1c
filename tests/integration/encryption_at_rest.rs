//! Token material is never at rest in the clear, and a sealed value only opens in its own item.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use keyport_shared::crypto::CryptoError;
use keyport_shared::domain::{Owner, TokenSecrets};
use keyport_shared::ports::{Expect, TokenKey};
use keyport_tests::backends::Backend;
use secrecy::{ExposeSecret, SecretString};

use crate::fixtures::{key, token, user};

crate::on_both_backends!(
    tokens_are_not_stored_in_any_readable_encoding,
    a_moved_ciphertext_fails_its_integrity_check
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
/// or URL escaping (which leave these alphanumeric values unchanged).
fn encodings(value: &str) -> Vec<Vec<u8>> {
    let bytes = value.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
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
