//! Fuzzes the strict compact-JWS reader and the whole validator with arbitrary bytes:
//! neither may panic, and nothing but a token signed by the fixture key may validate.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tessera_token::{
    DEFAULT_MAX_TOKEN_BYTES, KeyAlgorithm, KeySet, SigningKey, Validator, ValidatorConfig,
    read_compact,
};

static VALIDATOR: LazyLock<Option<Validator>> = LazyLock::new(|| {
    let key = SigningKey::generate(KeyAlgorithm::EdDSA).ok()?;
    let keys = KeySet::new(vec![key.verifying_key()]);
    Validator::new(keys, ValidatorConfig::new("https://auth.example", "tessera")).ok()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = read_compact(text, DEFAULT_MAX_TOKEN_BYTES);
    if let Some(validator) = VALIDATOR.as_ref() {
        // The key is fresh per run, so no input can carry a valid signature.
        assert!(validator.validate(text, 1_800_000_000).is_err());
    }
});
