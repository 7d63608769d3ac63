//! Properties over many generated inputs: no single-byte change of a valid token
//! verifies, and time rules hold for any timestamps, not only the hand-picked ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use proptest::prelude::*;
use tessera_token::{
    KeyAlgorithm, KeySet, SigningKey, TokenError, TokenIssuer, Validator, ValidatorConfig,
};

const ISS: &str = "https://auth.example";
const AUD: &str = "tessera";
const NOW: i64 = 1_800_000_000;

struct Fixture {
    validator: Validator,
    issuer: TokenIssuer,
    token: String,
}

static FIXTURES: LazyLock<Vec<Fixture>> = LazyLock::new(|| {
    [
        KeyAlgorithm::EdDSA,
        KeyAlgorithm::ES256,
        KeyAlgorithm::HS256,
    ]
    .into_iter()
    .map(|algorithm| {
        let key = match algorithm {
            KeyAlgorithm::HS256 => SigningKey::hmac(&[42; 32]).unwrap(),
            other => SigningKey::generate(other).unwrap(),
        };
        let validator = Validator::new(
            KeySet::new(vec![key.verifying_key()]),
            ValidatorConfig::new(ISS, AUD),
        )
        .unwrap();
        let issuer = TokenIssuer::new(key, ISS, AUD);
        let token = issuer.issue("user-a", "s1", NOW, 900).unwrap().token;
        Fixture {
            validator,
            issuer,
            token,
        }
    })
    .collect()
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_single_byte_change_of_a_valid_token_verifies(
        which in 0usize..3,
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let fixture = &FIXTURES[which];
        let mut bytes = fixture.token.clone().into_bytes();
        let index = position.index(bytes.len());
        prop_assume!(bytes[index] != replacement);
        bytes[index] = replacement;

        // Not UTF-8 cannot even be presented as a header value.
        if let Ok(changed) = String::from_utf8(bytes) {
            prop_assert!(fixture.validator.validate(&changed, NOW).is_err());
        }
    }

    #[test]
    fn a_token_is_accepted_exactly_until_expiry_plus_leeway(
        issued_at in 1_000_000_000i64..10_000_000_000,
        ttl in 1i64..86_400,
        offset in -100i64..100_000,
    ) {
        let fixture = &FIXTURES[0];
        let token = fixture.issuer.issue("user-a", "s1", issued_at, ttl).unwrap().token;
        let now = issued_at + offset;
        let leeway = 10;

        let outcome = fixture.validator.validate(&token, now);

        if now >= issued_at + ttl + leeway {
            prop_assert_eq!(outcome.unwrap_err(), TokenError::Expired);
        } else if now < issued_at - leeway {
            prop_assert_eq!(outcome.unwrap_err(), TokenError::NotYetValid);
        } else {
            prop_assert!(outcome.is_ok());
        }
    }
}
