//! Time as Tessera stores it (whole seconds since the Unix epoch) and as the API shows it
//! (RFC 3339 text).

use serde::Serializer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    tessera_guard::unix_now()
}

/// Serializes stored seconds as an RFC 3339 timestamp.
pub fn rfc3339<S: Serializer>(seconds: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    let text = OffsetDateTime::from_unix_timestamp(*seconds)
        .ok()
        .and_then(|moment| moment.format(&Rfc3339).ok())
        .unwrap_or_default();
    serializer.serialize_str(&text)
}
