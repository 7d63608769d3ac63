//! The master key: what signing keys are sealed under when they live in the database, so
//! that several instances share them while a copy of the database alone mints nothing.
//! Each key is sealed with AES-256-GCM (aws-lc-rs) under a key derived from the master
//! secret with HKDF-SHA256, bound to its `kid` and algorithm as associated data, so a
//! sealed key cannot be passed off as another row.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use zeroize::Zeroizing;

/// Domain separation for the derived sealing key.
const SEALING_INFO: &[u8] = b"tessera signing-key sealing v1";

/// The sealing key derived from the master secret. Its `Debug` shows nothing.
pub(crate) struct MasterKey {
    sealing: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

/// A sealed key could not be opened: another master key sealed it, or it was altered.
#[derive(Debug, thiserror::Error)]
#[error(
    "a signing key in the database cannot be opened with this master key (another \
     instance uses a different master_key_file, or the row was altered)"
)]
pub(crate) struct WrongMasterKey;

impl MasterKey {
    /// Derives the sealing key from `secret`, at least 32 random bytes (the caller
    /// checks the length and the file's permissions).
    pub(crate) fn derive(secret: &[u8]) -> anyhow::Result<Self> {
        let info = [SEALING_INFO];
        let prk = Salt::new(HKDF_SHA256, &[]).extract(secret);
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| anyhow::anyhow!("cannot derive the sealing key"))?;
        Ok(Self {
            sealing: LessSafeKey::new(UnboundKey::from(okm)),
        })
    }

    /// Seals `plain` (a private key) for the row `kid` of algorithm `alg`: a random
    /// nonce followed by the ciphertext and tag.
    pub(crate) fn seal(&self, kid: &str, alg: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut sealed = plain.to_vec();
        self.sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated(kid, alg)),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    /// Opens what [`MasterKey::seal`] sealed for the same `kid` and `alg`.
    pub(crate) fn open(
        &self,
        kid: &str,
        alg: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, WrongMasterKey> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN).ok_or(WrongMasterKey)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| WrongMasterKey)?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        let plain_len = self
            .sealing
            .open_in_place(nonce, Aad::from(associated(kid, alg)), &mut buffer)
            .map_err(|_| WrongMasterKey)?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }
}

/// The associated data: the algorithm and `kid`, separated by a byte neither contains.
fn associated(kid: &str, alg: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(alg.len() + kid.len() + 1);
    data.extend_from_slice(alg.as_bytes());
    data.push(0);
    data.extend_from_slice(kid.as_bytes());
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_sealed_key_opens_with_the_same_master_key_and_row() {
        let master = MasterKey::derive(SECRET).unwrap();

        let sealed = master.seal("kid-1", "EdDSA", b"private key").unwrap();

        assert_eq!(
            &master.open("kid-1", "EdDSA", &sealed).unwrap()[..],
            b"private key"
        );
        assert!(!sealed.windows(11).any(|window| window == b"private key"));
    }

    #[test]
    fn another_master_key_another_row_or_an_altered_byte_cannot_open_it() {
        let master = MasterKey::derive(SECRET).unwrap();
        let other = MasterKey::derive(b"another secret of thirty-two byt").unwrap();
        let sealed = master.seal("kid-1", "EdDSA", b"private key").unwrap();

        assert!(other.open("kid-1", "EdDSA", &sealed).is_err());
        assert!(master.open("kid-2", "EdDSA", &sealed).is_err());
        assert!(master.open("kid-1", "ES256", &sealed).is_err());
        for index in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[index] ^= 1;
            assert!(master.open("kid-1", "EdDSA", &altered).is_err(), "{index}");
        }
        assert!(master.open("kid-1", "EdDSA", &sealed[..5]).is_err());
    }

    #[test]
    fn two_seals_of_one_key_differ() {
        let master = MasterKey::derive(SECRET).unwrap();

        let first = master.seal("kid-1", "EdDSA", b"private key").unwrap();
        let second = master.seal("kid-1", "EdDSA", b"private key").unwrap();

        assert_ne!(first, second);
    }

    #[test]
    fn debug_shows_nothing_of_the_key() {
        let master = MasterKey::derive(SECRET).unwrap();

        assert_eq!(format!("{master:?}"), "MasterKey([REDACTED])");
    }
}
