//! The sealed formats, all integers big-endian.
//!
//! Version 2 (written today):
//!
//! ```text
//! [0]        format version (2)
//! [1..3]     length n of the wrapped data key
//! [3..3+n]   wrapped data key (a KMS ciphertext blob, or the local master key's wrap)
//! [..+1]     length m of the key epoch
//! [..+m]     key epoch: the opaque id in the data key's context (ASCII, base64url)
//! [..+12]    AES-256-GCM nonce
//! [..]       ciphertext followed by the 16-byte tag
//! ```
//!
//! The data key of a version 2 value is shared by every value of its purpose that one process
//! seals during the key's lifetime, so its context names only the purpose and the epoch. What
//! the value belongs to (connection and owner, or secret name) is in the associated data.
//!
//! Version 1 (read only) has no epoch: each value had its own data key, wrapped under the
//! value's full context.
//!
//! The associated data is a label, the header (everything before the nonce) and the item
//! context's canonical bytes, so a ciphertext moved to another item, or a header swapped,
//! fails the tag.

use aws_lc_rs::aead::NONCE_LEN;

use super::CryptoError;

pub const FORMAT_VERSION: u8 = 2;
pub(crate) const FORMAT_V1: u8 = 1;
pub(crate) const TAG_LEN: usize = 16;
const MAX_EPOCH_LEN: usize = 64;

/// A sealed value split into its parts, borrowing from the stored bytes.
pub(crate) struct Parsed<'a> {
    pub header: &'a [u8],
    pub wrapped: &'a [u8],
    /// `None` in version 1.
    pub epoch: Option<&'a str>,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: &'a [u8],
}

/// Whether `epoch` can stand in an encryption context and in the header: short, non-empty,
/// base64url characters only (a KMS context value must be text; these need no escaping).
pub(crate) fn valid_epoch(epoch: &str) -> bool {
    (1..=MAX_EPOCH_LEN).contains(&epoch.len())
        && epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn parse(sealed: &[u8]) -> Result<Parsed<'_>, CryptoError> {
    let (&version, rest) = sealed
        .split_first()
        .ok_or(CryptoError::Malformed("empty"))?;
    if version != FORMAT_VERSION && version != FORMAT_V1 {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    let (len, rest) = rest
        .split_at_checked(2)
        .ok_or(CryptoError::Malformed("truncated header"))?;
    let wrapped_len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let (wrapped, rest) = rest
        .split_at_checked(wrapped_len)
        .ok_or(CryptoError::Malformed("truncated data key"))?;
    let (epoch, rest) = if version == FORMAT_VERSION {
        let (&epoch_len, rest) = rest
            .split_first()
            .ok_or(CryptoError::Malformed("truncated epoch"))?;
        let (epoch, rest) = rest
            .split_at_checked(epoch_len as usize)
            .ok_or(CryptoError::Malformed("truncated epoch"))?;
        let epoch = std::str::from_utf8(epoch)
            .ok()
            .filter(|epoch| valid_epoch(epoch))
            .ok_or(CryptoError::Malformed("epoch"))?;
        (Some(epoch), rest)
    } else {
        (None, rest)
    };
    let header_len = sealed.len() - rest.len();
    let (nonce, ciphertext) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(CryptoError::Malformed("truncated nonce"))?;
    if ciphertext.len() < TAG_LEN || wrapped.is_empty() {
        return Err(CryptoError::Malformed("truncated ciphertext"));
    }
    Ok(Parsed {
        header: &sealed[..header_len],
        wrapped,
        epoch,
        nonce: nonce
            .try_into()
            .map_err(|_| CryptoError::Malformed("nonce"))?,
        ciphertext,
    })
}

/// The version 2 header for a data key and its epoch.
pub(crate) fn header_v2(wrapped: &[u8], epoch: &str) -> Result<Vec<u8>, CryptoError> {
    let wrapped_len = u16::try_from(wrapped.len())
        .map_err(|_| CryptoError::Malformed("wrapped data key too long"))?;
    if !valid_epoch(epoch) {
        return Err(CryptoError::Malformed("epoch"));
    }
    let mut header = Vec::with_capacity(4 + wrapped.len() + epoch.len());
    header.push(FORMAT_VERSION);
    header.extend_from_slice(&wrapped_len.to_be_bytes());
    header.extend_from_slice(wrapped);
    header.push(epoch.len() as u8);
    header.extend_from_slice(epoch.as_bytes());
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_header_parses_back() {
        let mut sealed = header_v2(b"wrapped", "epoch_1-A").unwrap();
        let header_len = sealed.len();
        sealed.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN + 3]);
        let parsed = parse(&sealed).unwrap();
        assert_eq!(parsed.wrapped, b"wrapped");
        assert_eq!(parsed.epoch, Some("epoch_1-A"));
        assert_eq!(parsed.header.len(), header_len);
        assert_eq!(parsed.ciphertext.len(), TAG_LEN + 3);
    }

    #[test]
    fn epochs_that_are_not_plain_text_are_refused() {
        for epoch in ["", "a b", "a=b", &"x".repeat(65), "é"] {
            assert!(!valid_epoch(epoch), "{epoch:?}");
            assert!(header_v2(b"w", epoch).is_err(), "{epoch:?}");
        }
        let mut sealed = header_v2(b"w", "ok").unwrap();
        sealed.extend_from_slice(&[0u8; NONCE_LEN + TAG_LEN]);
        // The epoch's length byte is right after the one-byte wrapped key.
        sealed[5] = b' ';
        assert!(matches!(
            parse(&sealed),
            Err(CryptoError::Malformed("epoch"))
        ));
    }
}
