//! The strict compact-JWS reader (RFC 7515 §7.1). It runs before any cryptography and
//! refuses everything Tessera does not itself produce: oversized input, a segment count
//! other than three, non-canonical base64url, non-object JSON, duplicate members, and
//! header members that would let a token pick its own key (`jku`, `jwk`, `x5u`, …).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::TokenError;

/// Tokens longer than this are refused unread. Tessera's own are under 600 bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Deepest JSON nesting accepted in header or claims. Tessera's deepest is two (the
/// claims object holding an `aud` array); anything deeper is refused before parsing.
pub const MAX_JSON_DEPTH: usize = 4;

/// The only JOSE header members Tessera understands. `deny_unknown_fields` turns every
/// other member, `crit` included, into a refusal, and serde refuses duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoseHeader {
    /// Signature algorithm named by the token; only ever compared with the key's own.
    pub alg: String,
    /// Token type; `at+jwt` for access tokens.
    pub typ: Option<String>,
    /// Key id, looked up among Tessera's own keys.
    pub kid: Option<String>,
}

/// A compact JWS split into its parts, not yet verified.
#[derive(Debug)]
pub struct CompactJws<'a> {
    /// The parsed protected header.
    pub header: JoseHeader,
    /// The decoded claims segment: a JSON object, not yet trusted.
    pub claims_json: Vec<u8>,
    /// The raw token, for the signature check.
    pub token: &'a str,
}

/// Reads a compact JWS strictly; see the module docs for what is refused.
pub fn read_compact(token: &str, max_bytes: usize) -> Result<CompactJws<'_>, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLong);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    decode_segment(signature)?;

    let header_json = decode_segment(header)?;
    let claims_json = decode_segment(claims)?;
    for json in [&header_json, &claims_json] {
        if !is_json_object(json) || nesting_depth(json) > MAX_JSON_DEPTH {
            return Err(TokenError::Malformed);
        }
    }
    let header = serde_json::from_slice::<JoseHeader>(&header_json)
        .map_err(|_| TokenError::ForbiddenHeader)?;

    Ok(CompactJws {
        header,
        claims_json,
        token,
    })
}

/// Canonical base64url only: no padding, no `+` or `/`, no non-zero unused bits (the
/// engine's defaults refuse all three), and no empty segment.
fn decode_segment(segment: &str) -> Result<Vec<u8>, TokenError> {
    if segment.is_empty() {
        return Err(TokenError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// serde would read a JSON array into a struct; JOSE requires an object (RFC 7515 §4).
fn is_json_object(json: &[u8]) -> bool {
    json.iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{')
}

/// The deepest nesting of arrays and objects, brackets inside strings not counted.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
    }

    const HEADER: &str = r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k"}"#;

    #[test]
    fn a_well_formed_token_is_read() {
        let raw = token(HEADER, r#"{"sub":"a"}"#);

        let jws = read_compact(&raw, DEFAULT_MAX_TOKEN_BYTES).unwrap();

        assert_eq!(jws.header.alg, "EdDSA");
        assert_eq!(jws.header.kid.as_deref(), Some("k"));
    }

    #[test]
    fn wrong_segment_counts_are_refused() {
        let raw = token(HEADER, "{}");
        let two = raw.rsplit_once('.').unwrap().0.to_owned();
        let empty_signature = format!("{two}.");
        let four = format!("{raw}.x");

        for bad in [two, empty_signature, four, String::new()] {
            assert_eq!(
                read_compact(&bad, DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
                TokenError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn non_canonical_base64_is_refused() {
        let padded = format!("{}=.{}.{}", b64(HEADER), b64("{}"), b64("sig"));
        let standard_alphabet = format!("{}.{}.ab+/", b64(HEADER), b64("{}"));
        // "QR" carries non-zero unused bits; canonical is "QQ".
        let unused_bits = format!("{}.{}.QR", b64(HEADER), b64("{}"));

        for bad in [padded, standard_alphabet, unused_bits] {
            assert_eq!(
                read_compact(&bad, DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
                TokenError::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn header_members_that_choose_keys_are_refused() {
        for header in [
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","jku":"http://x"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","jwk":{"kty":"OKP"}}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","x5u":"http://x"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","x5c":["AAAA"]}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","crit":["b64"],"b64":false}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","zip":"DEF"}"#,
            r#"{"alg":"EdDSA","typ":"at+jwt","kid":"a","kid":"b"}"#,
        ] {
            assert_eq!(
                read_compact(&token(header, "{}"), DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
                TokenError::ForbiddenHeader,
                "{header}"
            );
        }
    }

    #[test]
    fn json_that_is_not_an_object_is_refused() {
        let array_header = token(r#"["EdDSA","at+jwt","k"]"#, "{}");
        let array_claims = token(HEADER, "[1]");

        for bad in [array_header, array_claims] {
            assert_eq!(
                read_compact(&bad, DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
                TokenError::Malformed
            );
        }
    }

    #[test]
    fn deeply_nested_json_is_refused_before_parsing() {
        let deep = format!(r#"{{"aud":{}1{}}}"#, "[".repeat(50), "]".repeat(50));
        let shallow_text = r#"{"sub":"[[[[[[","aud":["a"]}"#;

        assert_eq!(
            read_compact(&token(HEADER, &deep), DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
            TokenError::Malformed
        );
        assert!(read_compact(&token(HEADER, shallow_text), DEFAULT_MAX_TOKEN_BYTES).is_ok());
        assert_eq!(nesting_depth(br#"{"a":"\"[[[["}"#), 1);
    }

    #[test]
    fn oversized_tokens_are_refused_unread() {
        let raw = token(HEADER, &format!(r#"{{"pad":"{}"}}"#, "x".repeat(9000)));

        assert_eq!(
            read_compact(&raw, DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
            TokenError::TooLong
        );
    }
}
