//! Sealing the successor of a refresh token, so that a retry inside the grace window gets
//! the very same pair (a lost response or two tabs racing never log anyone out), while
//! the database holds nothing a thief could use: the pair is encrypted with AES-256-GCM
//! under a key derived from the spent token itself, which the database never stores.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_token::Secret;

/// Domain separation: the sealing key must never equal the stored token hash.
const KEY_CONTEXT: &[u8] = b"tessera refresh successor key v1\0";

/// The pair handed out for a refresh, as sealed for retries.
#[derive(Serialize, Deserialize)]
pub(crate) struct SuccessorPair {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    /// When the access token expires, seconds since the epoch.
    pub(crate) expires_at: i64,
}

/// Encrypts `pair` with a key only the holder of `spent_token` can derive.
pub(crate) fn seal(spent_token: &str, pair: &SuccessorPair) -> anyhow::Result<Vec<u8>> {
    let key = key_for(spent_token)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let mut sealed = serde_json::to_vec(pair)?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| anyhow::anyhow!("sealing failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decrypts a pair sealed for `spent_token`; `None` if it was sealed for another token
/// or altered.
pub(crate) fn open(spent_token: &str, sealed: &[u8]) -> Option<SuccessorPair> {
    let key = key_for(spent_token).ok()?;
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut buffer).ok()?;
    serde_json::from_slice(plain).ok()
}

fn key_for(spent_token: &str) -> anyhow::Result<LessSafeKey> {
    let material = Secret::new(
        Sha256::new()
            .chain_update(KEY_CONTEXT)
            .chain_update(spent_token.as_bytes())
            .finalize()
            .to_vec(),
    );
    let key = UnboundKey::new(&AES_256_GCM, material.expose())
        .map_err(|_| anyhow::anyhow!("bad key length"))?;
    Ok(LessSafeKey::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> SuccessorPair {
        SuccessorPair {
            access_token: "access".to_owned(),
            refresh_token: "refresh".to_owned(),
            expires_at: 42,
        }
    }

    #[test]
    fn the_spent_token_opens_what_was_sealed_for_it() {
        let sealed = seal("spent-token", &pair()).unwrap();

        let opened = open("spent-token", &sealed).unwrap();

        assert_eq!(opened.refresh_token, "refresh");
        assert_eq!(opened.expires_at, 42);
    }

    #[test]
    fn another_token_or_an_altered_seal_opens_nothing() {
        let mut sealed = seal("spent-token", &pair()).unwrap();

        assert!(open("other-token", &sealed).is_none());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(open("spent-token", &sealed).is_none());
        assert!(open("spent-token", &[1, 2, 3]).is_none());
    }

    #[test]
    fn the_sealed_bytes_do_not_contain_the_tokens() {
        let sealed = seal("spent-token", &pair()).unwrap();

        let text = String::from_utf8_lossy(&sealed);

        assert!(!text.contains("refresh") && !text.contains("access"));
    }
}
