//! Published test vectors: the JWS examples of RFC 7515 Appendix A (HS256, RS256,
//! ES256) and the Ed25519 example and thumbprint of RFC 8037 Appendix A. Each must
//! verify as published and fail once a single character changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera_token::{Jwk, SigningKey, VerifyingKey};

/// The payload of RFC 7515 A.1 to A.3, with its CRLF line breaks.
const RFC7515_PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6\
Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

fn jwk(kty: &str, alg: &str, members: &[(&str, &str)]) -> Jwk {
    let mut value = serde_json::json!({"kty": kty, "alg": alg, "kid": "vector", "use": "sig"});
    for (name, member) in members {
        value[*name] = serde_json::json!(member);
    }
    serde_json::from_value(value).unwrap()
}

/// Verifies `token` with `key`, and checks that changing the last character of the
/// signature breaks it.
fn assert_vector(key: &VerifyingKey, token: &str) {
    let (input, signature) = token.rsplit_once('.').unwrap();
    assert!(
        key.verify_signature(input, signature),
        "published vector fails"
    );

    let mut altered = signature.to_owned();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(
        !key.verify_signature(input, &altered),
        "altered vector verifies"
    );
}

#[test]
fn rfc_7515_a1_hs256_verifies() {
    let k =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    let key = SigningKey::hmac(&URL_SAFE_NO_PAD.decode(k).unwrap()).unwrap();
    let token = format!(
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{RFC7515_PAYLOAD}.\
         dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );

    assert_vector(&key.verifying_key(), &token);
}

#[test]
fn rfc_7515_a2_rs256_verifies() {
    let n = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2\
mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63\
kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6\
_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
    let key = VerifyingKey::from_jwk(&jwk("RSA", "RS256", &[("n", n), ("e", "AQAB")])).unwrap();
    let token = format!(
        "eyJhbGciOiJSUzI1NiJ9.{RFC7515_PAYLOAD}.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2Vt\
Qgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiu\
B--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC\
-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0i\
gcN_IoypGlUPQGe77Rw"
    );

    assert_vector(&key, &token);
}

#[test]
fn rfc_7515_a3_es256_verifies() {
    let key = VerifyingKey::from_jwk(&jwk(
        "EC",
        "ES256",
        &[
            ("crv", "P-256"),
            ("x", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"),
            ("y", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"),
        ],
    ))
    .unwrap();
    let token = format!(
        "eyJhbGciOiJFUzI1NiJ9.{RFC7515_PAYLOAD}.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXF\
CgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
    );

    assert_vector(&key, &token);
}

#[test]
fn rfc_8037_a4_ed25519_verifies_and_a3_thumbprint_matches() {
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    let key =
        VerifyingKey::from_jwk(&jwk("OKP", "EdDSA", &[("crv", "Ed25519"), ("x", x)])).unwrap();
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLW\
G1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

    assert_vector(&key, token);

    // RFC 8037 A.3: the RFC 7638 thumbprint of this key, which Tessera uses as `kid`.
    let d = URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap();
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend_from_slice(&d);
    let signing = SigningKey::from_pkcs8_der(&pkcs8).unwrap();
    assert_eq!(signing.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn jwks_whose_members_disagree_are_refused() {
    let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    for bad in [
        jwk("OKP", "ES256", &[("crv", "Ed25519"), ("x", x)]),
        jwk("OKP", "EdDSA", &[("crv", "X25519"), ("x", x)]),
        jwk("OKP", "none", &[("crv", "Ed25519"), ("x", x)]),
        jwk("RSA", "RS256", &[("n", "AQAB"), ("e", "AQAB")]),
        jwk("EC", "ES256", &[("crv", "P-256"), ("x", x)]),
    ] {
        assert!(VerifyingKey::from_jwk(&bad).is_err(), "{bad:?}");
    }
}
