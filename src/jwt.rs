//! Reading a JWT's header and claims without verifying it.
//!
//! The refresher only needs the claims to learn a token's expiry (`exp`) and to let callers read
//! what the issuer put in it (an account id, scopes). Verification is the resource server's job.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

/// URL-safe base64 that tolerates issuers which pad their segments (RFC 7515 says they must not).
const SEGMENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes one base64url segment into a JSON object.
fn decode_segment(segment: &str) -> Option<Map<String, Value>> {
    let bytes = SEGMENT.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Splits a compact JWS into its three segments.
fn segments(token: &str) -> Option<(&str, &str, &str)> {
    let mut parts = token.split('.');
    let header = parts.next()?;
    let payload = parts.next()?;
    let signature = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    Some((header, payload, signature))
}

/// Whether `token` is shaped like a JWT: three segments whose header decodes to a JSON object.
#[cfg_attr(not(feature = "http-sources"), allow(dead_code))]
pub(crate) fn is_jwt(token: &str) -> bool {
    segments(token).is_some_and(|(header, _, _)| decode_segment(header).is_some())
}

/// The claims of a JWT, or `None` when `token` is not one (opaque tokens).
pub(crate) fn claims(token: &str) -> Option<Map<String, Value>> {
    let (header, payload, _) = segments(token)?;
    decode_segment(header)?;
    decode_segment(payload)
}

/// The `exp` claim as a point in time, when present and sensible (a non-negative number).
pub(crate) fn expiry(claims: &Map<String, Value>) -> Option<SystemTime> {
    let exp = claims.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)
}

/// Encodes a JWT with the given claims and a placeholder signature (tests and examples only).
#[cfg(test)]
pub(crate) fn unsigned(claims: &Value) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.c2ln",
        engine.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        engine.encode(claims.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;
    use serde_json::json;

    #[test]
    fn decodes_claims_of_a_jwt() {
        let token = unsigned(&json!({"sub": "acct_42", "exp": 2_000_000_000}));
        let claims = claims(&token).unwrap();
        assert_eq!(claims["sub"], "acct_42");
        assert!(is_jwt(&token));
        assert_eq!(
            expiry(&claims),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
    }

    #[test]
    fn opaque_and_malformed_tokens_have_no_claims() {
        for token in ["opaque-token", "a.b.c", "a.b", "", "..", "x.y.z.w"] {
            assert!(claims(token).is_none(), "{token}");
            assert!(!is_jwt(token), "{token}");
        }
        // A header that is JSON but not an object is not a JWT header.
        let engine = general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.sig", engine.encode("[1]"), engine.encode("{}"));
        assert!(claims(&token).is_none());
    }

    #[test]
    fn padded_segments_are_accepted() {
        let engine = general_purpose::URL_SAFE;
        let token = format!(
            "{}.{}.sig",
            engine.encode(r#"{"alg":"none"}"#),
            engine.encode(r#"{"exp":1}"#)
        );
        assert!(claims(&token).is_some());
    }

    #[test]
    fn nonsensical_exp_is_ignored() {
        for exp in [json!(-5), json!("soon"), json!(1e300)] {
            let claims = json!({ "exp": exp });
            assert_eq!(expiry(claims.as_object().unwrap()), None, "{exp}");
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_decodes_or_is_refused_without_panicking(text in ".{0,300}") {
                let _ = claims(&text);
                let _ = is_jwt(&text);
            }

            #[test]
            fn any_three_segments_decode_or_are_refused(
                a in "[A-Za-z0-9_=-]{0,80}",
                b in "[A-Za-z0-9_=-]{0,200}",
                c in "[A-Za-z0-9_-]{0,40}",
            ) {
                if let Some(claims) = claims(&format!("{a}.{b}.{c}")) {
                    let _ = expiry(&claims);
                }
            }

            #[test]
            fn exp_round_trips(exp in 0u64..100_000_000_000, sub in "[a-z]{0,12}") {
                let token = unsigned(&serde_json::json!({"exp": exp, "sub": sub}));
                let decoded = claims(&token).unwrap();
                prop_assert_eq!(
                    expiry(&decoded),
                    Some(UNIX_EPOCH + Duration::from_secs(exp))
                );
                prop_assert_eq!(decoded["sub"].as_str(), Some(sub.as_str()));
            }

            #[test]
            fn any_json_exp_is_a_time_or_nothing(exp in proptest::num::f64::ANY) {
                let claims = serde_json::json!({ "exp": exp });
                if let Some(claims) = claims.as_object() {
                    let _ = expiry(claims);
                }
            }
        }
    }
}
