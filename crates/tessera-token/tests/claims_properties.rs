//! Properties of claims validation over generated claim sets, signed with the real key
//! so that only the claim rule under test can refuse them: `exp`, `nbf` and `iat`
//! against every leeway at and around its boundaries, implausible timestamps, and any
//! `iss` or `aud` that is not exactly Tessera's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};
use tessera_token::{
    KeyAlgorithm, KeySet, MAX_LEEWAY_SECS, SigningKey, TokenError, Validator, ValidatorConfig,
};

const ISS: &str = "https://auth.example";
const AUD: &str = "tessera";
/// Inside the plausible range the validator allows (2001 to the year 5000).
const EARLIEST: i64 = 1_000_000_000;
const LATEST: i64 = 95_000_000_000;

static KEY: LazyLock<SigningKey> =
    LazyLock::new(|| SigningKey::generate(KeyAlgorithm::EdDSA).unwrap());

fn validator(leeway_secs: u64) -> Validator {
    let mut config = ValidatorConfig::new(ISS, AUD);
    config.leeway_secs = leeway_secs;
    Validator::new(KeySet::new(vec![KEY.verifying_key()]), config).unwrap()
}

/// Tessera's own claim set at the given times.
fn claims(exp: i64, nbf: i64, iat: i64) -> Value {
    json!({
        "iss": ISS, "sub": "user-a", "aud": AUD, "exp": exp, "iat": iat, "nbf": nbf,
        "jti": "j", "sid": "s1",
    })
}

/// `claims` signed with the trusted key under Tessera's header.
fn sign(claims: &Value) -> String {
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": KEY.kid()});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = KEY.sign_jws_input(&input).unwrap();
    format!("{input}.{signature}")
}

/// What the time rules say, written out: expiry first, then not-before, then
/// issued-at, each with the leeway on the side that tolerates skew.
fn expected(now: i64, leeway: i64, exp: i64, nbf: i64, iat: i64) -> Result<(), TokenError> {
    if now >= exp + leeway {
        Err(TokenError::Expired)
    } else if nbf > now + leeway {
        Err(TokenError::NotYetValid)
    } else if iat > now + leeway {
        Err(TokenError::IssuedInFuture)
    } else {
        Ok(())
    }
}

fn leeway() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(10),
        Just(MAX_LEEWAY_SECS),
        0..=MAX_LEEWAY_SECS
    ]
}

/// An offset from `now` that lands on, just before or just after `-leeway`, `0` or
/// `+leeway`, or anywhere within a day.
fn near_boundary(leeway: u64) -> impl Strategy<Value = i64> {
    let leeway = i64::try_from(leeway).unwrap();
    prop_oneof![
        3 => (-2i64..=2, prop::sample::select(vec![-leeway, 0, leeway]))
            .prop_map(|(nudge, edge)| edge + nudge),
        1 => -86_400i64..86_400,
    ]
}

/// A string that differs from `exact`: a near miss (prefix, suffix, case, padding,
/// one character changed) or anything at all.
fn other_than(exact: &'static str) -> impl Strategy<Value = String> {
    let near_miss = (0..exact.len(), any::<char>(), 0usize..6).prop_map(move |(at, c, how)| {
        let mut text = exact.to_owned();
        match how {
            0 => text.truncate(at),
            1 => text.push(c),
            2 => text.insert(0, c),
            3 => text = text.to_uppercase(),
            4 => text.push(' '),
            _ => text.replace_range(at..=at, &c.to_string()),
        }
        text
    });
    prop_oneof![near_miss, any::<String>()].prop_filter("must differ", move |text| text != exact)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_time_rules_hold_at_and_around_every_leeway_boundary(
        (leeway, exp_offset, nbf_offset, iat_offset) in leeway().prop_flat_map(|leeway| {
            (Just(leeway), near_boundary(leeway), near_boundary(leeway), near_boundary(leeway))
        }),
        now in EARLIEST + 200_000..LATEST - 200_000,
    ) {
        let (exp, nbf, iat) = (now + exp_offset, now + nbf_offset, now + iat_offset);
        let token = sign(&claims(exp, nbf, iat));

        let outcome = validator(leeway).validate(&token, now).map(drop);

        let leeway = i64::try_from(leeway).unwrap();
        prop_assert_eq!(outcome, expected(now, leeway, exp, nbf, iat));
    }

    #[test]
    fn an_implausible_timestamp_is_refused_whatever_the_clock_says(
        which in 0usize..3,
        bad in prop_oneof![i64::MIN..EARLIEST, LATEST..=i64::MAX],
        now in any::<i64>(),
        leeway in leeway(),
    ) {
        let mut times = [now.clamp(EARLIEST, LATEST - 1); 3];
        times[which] = bad;
        let token = sign(&claims(times[0], times[1], times[2]));

        let outcome = validator(leeway).validate(&token, now);

        prop_assert_eq!(outcome.unwrap_err(), TokenError::InvalidClaims);
    }

    #[test]
    fn any_issuer_but_the_exact_one_is_refused(iss in other_than(ISS)) {
        let now = 1_800_000_000;
        let mut forged = claims(now + 300, now, now);
        forged["iss"] = json!(iss);

        let outcome = validator(10).validate(&sign(&forged), now);

        prop_assert_eq!(outcome.unwrap_err(), TokenError::WrongIssuer);
    }

    #[test]
    fn an_audience_without_the_exact_one_is_refused(
        single in other_than(AUD),
        many in prop::collection::vec(other_than(AUD), 0..4),
        as_array in any::<bool>(),
    ) {
        let now = 1_800_000_000;
        let mut forged = claims(now + 300, now, now);
        forged["aud"] = if as_array { json!(many) } else { json!(single) };

        let outcome = validator(10).validate(&sign(&forged), now);

        prop_assert_eq!(outcome.unwrap_err(), TokenError::WrongAudience);
    }

    #[test]
    fn an_audience_array_holding_the_exact_one_is_accepted(
        others in prop::collection::vec(other_than(AUD), 0..4),
        at in any::<prop::sample::Index>(),
    ) {
        let now = 1_800_000_000;
        let mut audiences = others;
        audiences.insert(at.index(audiences.len() + 1), AUD.to_owned());
        let mut token_claims = claims(now + 300, now, now);
        token_claims["aud"] = json!(audiences);

        let outcome = validator(10).validate(&sign(&token_claims), now);

        prop_assert!(outcome.is_ok());
    }

    #[test]
    fn issuer_and_audience_of_another_json_type_are_refused(
        field in prop::sample::select(vec!["iss", "aud"]),
        value in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            Just(json!({"value": AUD})),
            Just(json!([[AUD]])),
            Just(json!([ISS, 1])),
        ],
    ) {
        let now = 1_800_000_000;
        let mut forged = claims(now + 300, now, now);
        forged[field] = value;

        let outcome = validator(10).validate(&sign(&forged), now);

        prop_assert_eq!(outcome.unwrap_err(), TokenError::InvalidClaims);
    }
}
