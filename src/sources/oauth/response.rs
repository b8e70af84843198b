//! Reading token endpoints' answers: RFC 6749 section 5.1 (a token) and 5.2 (an error), plus the
//! variations real services use. Pure functions over bytes and plain data; no I/O, no clock.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::{FetchError, FetchErrorKind, Token};

/// Lifetimes beyond this are a server bug, not a short-lived credential (ten years).
const LONGEST_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Where a successful answer keeps its parts.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    /// Field names that may hold the token, tried in order.
    pub(crate) token_fields: Vec<String>,
    /// Lifetime for answers that state none (and hold no JWT with `exp`).
    pub(crate) default_lifetime: Option<Duration>,
    /// The field that states the expiry as a point in time (`expires_at`; Azure's managed
    /// identity says `expires_on`).
    pub(crate) expires_at_field: &'static str,
}

impl Shape {
    pub(crate) fn oauth() -> Shape {
        Shape {
            token_fields: vec!["access_token".into()],
            default_lifetime: None,
            expires_at_field: "expires_at",
        }
    }
}

/// The token in a successful answer from `endpoint`, received at `now`.
///
/// Errors name the endpoint and the field; they are transient, since a garbled answer is as
/// often a proxy or a deployment in progress as a misconfiguration.
pub(crate) fn parse_token(
    body: &[u8],
    endpoint: &str,
    shape: &Shape,
    now: SystemTime,
) -> Result<Token, FetchError> {
    let bad = |what: String| FetchError::transient(format!("{endpoint}: {what}"));
    let mut fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(bad("the answer is JSON but not an object".into())),
        Err(_) if looks_like_html(body) => {
            return Err(bad(
                "the answer is not JSON but HTML (a login or proxy error page?)".into(),
            ));
        }
        Err(_) => return Err(bad("the answer is not JSON".into())),
    };

    let Some((name, value)) = shape
        .token_fields
        .iter()
        .find_map(|name| fields.remove(name).map(|value| (name, value)))
    else {
        let names: Vec<_> = shape
            .token_fields
            .iter()
            .map(|n| format!("`{n}`"))
            .collect();
        return Err(bad(format!(
            "the answer has no token (no {})",
            names.join(" or ")
        )));
    };
    let Value::String(secret) = value else {
        return Err(bad(format!("field `{name}` is not a string")));
    };
    if secret.is_empty() {
        return Err(bad(format!("field `{name}` is empty")));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(format!(
            "field `{name}` has characters that cannot go in an HTTP header"
        )));
    }

    let mut token = Token::new(secret);
    if let Some(value) = fields.remove("expires_in") {
        let lifetime = seconds(&value)
            .ok_or_else(|| bad("field `expires_in` is not a number of seconds".into()))?;
        token = token.expires_in(lifetime_within_bounds(lifetime, "expires_in").map_err(bad)?);
    }
    // Both may be stated (and a JWT's `exp` besides): the earliest wins, see `Token`.
    let at_field = shape.expires_at_field;
    if let Some(value) = fields.remove(at_field) {
        let at = point_in_time(&value).ok_or_else(|| {
            bad(format!(
                "field `{at_field}` is neither RFC 3339 nor Unix seconds"
            ))
        })?;
        if at
            .duration_since(now)
            .is_ok_and(|left| left > LONGEST_LIFETIME)
        {
            return Err(bad(format!(
                "field `{at_field}` is more than ten years away"
            )));
        }
        token = token.expires_at(at);
    } else if token.expiry().is_none()
        && let Some(lifetime) = shape.default_lifetime
    {
        token = token.expires_in(lifetime);
    }
    if let Some(value) = fields.remove("token_type") {
        match value {
            Value::String(kind) if !kind.is_empty() => token = token.with_token_type(kind),
            _ => return Err(bad("field `token_type` is not a string".into())),
        }
    }
    if let Some(value) = fields.remove("scope") {
        match value {
            Value::String(scope) => token = token.with_scope(scope),
            _ => return Err(bad("field `scope` is not a string".into())),
        }
    }
    match fields.remove("refresh_token") {
        Some(Value::String(refresh)) if !refresh.is_empty() => {
            token = token.with_refresh_token(refresh);
        }
        Some(Value::Null) | None => {}
        Some(_) => return Err(bad("field `refresh_token` is not a string".into())),
    }
    Ok(token.with_extra(fields))
}

/// The token in an answer to a refresh made with `used`. A server that does not rotate the
/// refresh token leaves it out of the answer (RFC 6749 section 6): the one used stays valid and
/// is carried over, so the next refresh (and the store) has it.
pub(crate) fn parse_refreshed(
    body: &[u8],
    endpoint: &str,
    shape: &Shape,
    now: SystemTime,
    used: &SecretString,
) -> Result<Token, FetchError> {
    let token = parse_token(body, endpoint, shape, now)?;
    Ok(match token.refresh_token() {
        Some(_) => token, // rotated
        None => token.with_refresh_token(used.clone()),
    })
}

/// A number of seconds, as a JSON number or a numeric string (some servers quote it). Negative
/// values are kept as `Err` so the caller can say so.
fn seconds(value: &Value) -> Option<Result<f64, f64>> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !number.is_finite() {
        return None;
    }
    Some(if number < 0.0 {
        Err(number)
    } else {
        Ok(number)
    })
}

/// Whether a body that is not JSON starts like an HTML page.
fn looks_like_html(body: &[u8]) -> bool {
    let start = body.trim_ascii_start();
    start.starts_with(b"<")
}

/// A number of seconds as a person reads it: `3600`, `1.5`, or `1e300` rather than 301 digits.
fn readable_seconds(secs: f64) -> String {
    if secs.abs() < 1e9 {
        format!("{secs}")
    } else {
        format!("{secs:e}")
    }
}

fn lifetime_within_bounds(seconds: Result<f64, f64>, field: &str) -> Result<Duration, String> {
    match seconds {
        Err(negative) => Err(format!(
            "field `{field}` is negative ({})",
            readable_seconds(negative)
        )),
        Ok(secs) => match Duration::try_from_secs_f64(secs) {
            Ok(lifetime) if lifetime <= LONGEST_LIFETIME => Ok(lifetime),
            _ => Err(format!(
                "field `{field}` is absurd ({} s, over ten years)",
                readable_seconds(secs)
            )),
        },
    }
}

/// A point in time given as Unix seconds (number or numeric string) or RFC 3339.
fn point_in_time(value: &Value) -> Option<SystemTime> {
    if let Some(Ok(secs)) = seconds(value) {
        return UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?);
    }
    match value {
        Value::String(text) => parse_rfc3339(text),
        _ => None,
    }
}

/// RFC 3339 with `Z` or a numeric offset (humantime reads UTC only; the offset is applied here).
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let split = text
        .len()
        .checked_sub(6)
        .filter(|&i| text.is_char_boundary(i));
    let (base, offset) = match split.map(|i| text.split_at(i)) {
        Some((base, offset))
            if matches!(offset.as_bytes(), [b'+' | b'-', _, _, b':', _, _]) && base.len() > 10 =>
        {
            let hours: u64 = offset[1..3].parse().ok()?;
            let minutes: u64 = offset[4..6].parse().ok()?;
            let shift = Duration::from_secs(hours * 3600 + minutes * 60);
            (base, Some((offset.starts_with('-'), shift)))
        }
        _ => (text.strip_suffix(['Z', 'z']).unwrap_or(text), None),
    };
    let local = humantime::parse_rfc3339_weak(base).ok()?;
    match offset {
        // Local time is UTC plus the offset.
        Some((false, shift)) => local.checked_sub(shift),
        Some((true, shift)) => local.checked_add(shift),
        None => Some(local),
    }
}

/// The fields of an RFC 6749 section 5.2 error answer, where present.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct OAuthError {
    pub(crate) error: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) uri: Option<String>,
}

impl OAuthError {
    pub(crate) fn parse(body: &[u8]) -> OAuthError {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return OAuthError::default();
        };
        // Kept whole: the caller scrubs secrets from the text before it shortens it.
        let text = |fields: &Map<String, Value>, name: &str| {
            fields.get(name).and_then(Value::as_str).map(str::to_owned)
        };
        OAuthError {
            // Some services say `error` as an object or use `message`; take what reads as text.
            error: text(&fields, "error").or_else(|| text(&fields, "code")),
            description: text(&fields, "error_description").or_else(|| text(&fields, "message")),
            uri: text(&fields, "error_uri"),
        }
    }

    /// `invalid_grant (the refresh token expired) [see https://...]`, or empty.
    pub(crate) fn detail(&self) -> String {
        let mut out = String::new();
        if let Some(error) = &self.error {
            out.push_str(error);
        }
        if let Some(description) = &self.description {
            if out.is_empty() {
                out.push_str(description);
            } else {
                let _ = write!(out, " ({description})");
            }
        }
        if let Some(uri) = &self.uri {
            let _ = write!(out, "{}see {uri}", if out.is_empty() { "" } else { "; " });
        }
        out
    }
}

/// Whether retrying a non-success answer can help: 408, 429, 5xx and
/// `temporarily_unavailable` can; every other answer (bad credentials, revoked grant, bad
/// request, redirects) cannot until something changes.
pub(crate) fn classify(status: u16, error: &OAuthError) -> FetchErrorKind {
    let retryable = matches!(status, 408 | 429 | 500..=599)
        || matches!(
            error.error.as_deref(),
            Some("temporarily_unavailable" | "slow_down")
        );
    if retryable {
        FetchErrorKind::Transient
    } else {
        FetchErrorKind::Permanent
    }
}

/// A `Retry-After` value (seconds or an HTTP date) as a wait from `now`.
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-09-21: tests' idea of now.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    fn parse(body: Value) -> Result<Token, FetchError> {
        parse_token(
            body.to_string().as_bytes(),
            "https://auth.test/token",
            &Shape::oauth(),
            now(),
        )
    }

    fn message(result: Result<Token, FetchError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn reads_a_standard_answer_and_keeps_extra_fields() {
        let token = parse(json!({
            "access_token": "abc",
            "token_type": "bearer",
            "expires_in": 3600,
            "scope": "read write",
            "refresh_token": "r1",
            "environment_id": "env-7",
            "endpoints": {"eu": "https://eu.api.test"}
        }))
        .unwrap();
        assert_eq!(token.expose_secret(), "abc");
        assert_eq!(token.token_type(), "bearer");
        assert_eq!(token.scope(), Some("read write"));
        assert_eq!(
            token.time_left(token.issued_at()),
            Some(Duration::from_secs(3600))
        );
        assert!(token.refresh_token().is_some());
        assert_eq!(token.extra()["environment_id"], "env-7");
        assert_eq!(token.extra()["endpoints"]["eu"], "https://eu.api.test");
        assert!(!token.extra().contains_key("access_token"));
    }

    #[test]
    fn lifetime_comes_from_expires_in_expires_at_exp_or_the_default() {
        let quoted = parse(json!({"access_token": "a", "expires_in": "60"})).unwrap();
        assert_eq!(
            quoted.time_left(quoted.issued_at()),
            Some(Duration::from_secs(60))
        );

        let unix = parse(json!({"access_token": "a", "expires_at": 2_000_000_000})).unwrap();
        assert_eq!(
            unix.expiry(),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );

        let rfc =
            parse(json!({"access_token": "a", "expires_at": "2033-05-18T03:33:20Z"})).unwrap();
        assert_eq!(rfc.expiry(), unix.expiry());

        let offset =
            parse(json!({"access_token": "a", "expires_at": "2033-05-18T05:33:20+02:00"})).unwrap();
        assert_eq!(offset.expiry(), unix.expiry());

        let jwt = crate::jwt::unsigned(&json!({"exp": 2_000_000_000}));
        let from_exp = parse(json!({ "access_token": jwt })).unwrap();
        assert_eq!(from_exp.expiry(), unix.expiry());

        let shape = Shape {
            token_fields: vec!["access_token".into()],
            default_lifetime: Some(Duration::from_secs(900)),
            ..Shape::oauth()
        };
        let body = json!({"access_token": "opaque"}).to_string();
        let defaulted = parse_token(body.as_bytes(), "e", &shape, now()).unwrap();
        assert_eq!(
            defaulted.time_left(defaulted.issued_at()),
            Some(Duration::from_secs(900))
        );
        let none = parse(json!({"access_token": "opaque"})).unwrap();
        assert_eq!(none.expiry(), None);
    }

    #[test]
    fn a_refresh_answer_keeps_the_refresh_token_it_does_not_rotate() {
        use secrecy::ExposeSecret;
        let used = SecretString::from("r1");
        let kept = json!({"access_token": "a"}).to_string();
        let kept = parse_refreshed(kept.as_bytes(), "e", &Shape::oauth(), now(), &used).unwrap();
        assert_eq!(kept.refresh_token().unwrap().expose_secret(), "r1");
        let rotated = json!({"access_token": "a", "refresh_token": "r2"}).to_string();
        let rotated =
            parse_refreshed(rotated.as_bytes(), "e", &Shape::oauth(), now(), &used).unwrap();
        assert_eq!(rotated.refresh_token().unwrap().expose_secret(), "r2");
    }

    #[test]
    fn token_field_names_are_configurable_and_tried_in_order() {
        let shape = Shape {
            token_fields: vec!["token".into(), "access_token".into(), "jwt".into()],
            ..Shape::oauth()
        };
        let body = json!({"jwt": "from-jwt", "access_token": "from-access"}).to_string();
        let token = parse_token(body.as_bytes(), "e", &shape, now()).unwrap();
        assert_eq!(token.expose_secret(), "from-access");
        let body = json!({"data": 1}).to_string();
        let err = parse_token(body.as_bytes(), "https://x.test/jwt", &shape, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "https://x.test/jwt: the answer has no token (no `token` or `access_token` or `jwt`)"
        );
    }

    #[test]
    fn malformed_answers_name_the_endpoint_and_the_field() {
        let cases = [
            (json!([1, 2]), "the answer is JSON but not an object"),
            (
                json!({"token_type": "bearer"}),
                "the answer has no token (no `access_token`)",
            ),
            (
                json!({"access_token": 42}),
                "field `access_token` is not a string",
            ),
            (json!({"access_token": ""}), "field `access_token` is empty"),
            (
                json!({"access_token": "a b"}),
                "cannot go in an HTTP header",
            ),
            (
                json!({"access_token": "a", "expires_in": -5}),
                "field `expires_in` is negative (-5)",
            ),
            (
                json!({"access_token": "a", "expires_in": 1e12}),
                "field `expires_in` is absurd",
            ),
            (
                json!({"access_token": "a", "expires_in": "soon"}),
                "not a number of seconds",
            ),
            (
                json!({"access_token": "a", "expires_at": "tomorrow"}),
                "neither RFC 3339",
            ),
            (
                json!({"access_token": "a", "expires_at": 9e11}),
                "more than ten years away",
            ),
            (
                json!({"access_token": "a", "scope": ["x"]}),
                "field `scope` is not a string",
            ),
            (
                json!({"access_token": "a", "refresh_token": 1}),
                "`refresh_token` is not a string",
            ),
        ];
        for (body, expected) in cases {
            let text = message(parse(body.clone()));
            assert!(text.starts_with("https://auth.test/token: "), "{text}");
            assert!(text.contains(expected), "{body}: {text}");
        }
        let err = parse_token(b"{\"access_token\": ", "e", &Shape::oauth(), now()).unwrap_err();
        assert_eq!(err.to_string(), "e: the answer is not JSON");
        assert!(err.is_transient());
        let html =
            parse_token(b"\n <html>sign in</html>", "e", &Shape::oauth(), now()).unwrap_err();
        assert!(html.to_string().contains("not JSON but HTML"), "{html}");
        assert_eq!(readable_seconds(1e300), "1e300");
        assert_eq!(readable_seconds(3600.5), "3600.5");
    }

    #[test]
    fn oauth_errors_are_parsed_and_described() {
        let error = OAuthError::parse(
            json!({
                "error": "invalid_grant",
                "error_description": "refresh token expired",
                "error_uri": "https://docs.test/errors"
            })
            .to_string()
            .as_bytes(),
        );
        assert_eq!(
            error.detail(),
            "invalid_grant (refresh token expired); see https://docs.test/errors"
        );
        assert_eq!(OAuthError::parse(b"Bad Gateway").detail(), "");
        let message_only = OAuthError::parse(br#"{"message": "key revoked"}"#);
        assert_eq!(message_only.detail(), "key revoked");
    }

    #[test]
    fn classification_follows_rfc_6749_and_http() {
        let code = |error: &str| OAuthError {
            error: Some(error.into()),
            ..OAuthError::default()
        };
        for error in [
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_request",
        ] {
            assert_eq!(
                classify(400, &code(error)),
                FetchErrorKind::Permanent,
                "{error}"
            );
        }
        assert_eq!(
            classify(401, &OAuthError::default()),
            FetchErrorKind::Permanent
        );
        assert_eq!(
            classify(403, &OAuthError::default()),
            FetchErrorKind::Permanent
        );
        assert_eq!(
            classify(302, &OAuthError::default()),
            FetchErrorKind::Permanent
        );
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify(status, &OAuthError::default()),
                FetchErrorKind::Transient
            );
        }
        assert_eq!(
            classify(400, &code("temporarily_unavailable")),
            FetchErrorKind::Transient
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        let then = UNIX_EPOCH + Duration::from_secs(784_111_717); // Sun, 06 Nov 1994 08:48:37
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", then),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", then),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now()), None);
        assert_eq!(retry_after("-5", now()), None);
    }

    #[test]
    fn rfc3339_variants() {
        let at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(parse_rfc3339("2033-05-18T03:33:20Z"), Some(at));
        assert_eq!(parse_rfc3339("2033-05-18T03:33:20"), Some(at));
        assert_eq!(parse_rfc3339("2033-05-17T22:33:20-05:00"), Some(at));
        assert_eq!(
            parse_rfc3339("2033-05-18T03:33:20.5Z"),
            Some(at + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339("not a date"), None);
        assert_eq!(parse_rfc3339("ééééééé"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// JSON values of any shape, a few levels deep.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                proptest::num::f64::NORMAL.prop_map(Value::from),
                ".{0,20}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Answers built from the fields the parser reads, each of any type.
        fn token_answer() -> impl Strategy<Value = Value> {
            let field = |name: &'static str| {
                proptest::option::of(json_value()).prop_map(move |v| (name, v))
            };
            (
                prop_oneof![".{0,40}".prop_map(Value::from), json_value()],
                field("expires_in"),
                field("expires_at"),
                field("token_type"),
                field("scope"),
                field("refresh_token"),
            )
                .prop_map(|(token, a, b, c, d, e)| {
                    let mut fields = Map::new();
                    fields.insert("access_token".into(), token);
                    for (name, value) in [a, b, c, d, e] {
                        if let Some(value) = value {
                            fields.insert(name.into(), value);
                        }
                    }
                    Value::Object(fields)
                })
        }

        proptest! {
            #[test]
            fn any_bytes_parse_or_fail_with_a_named_transient_error(body in proptest::collection::vec(any::<u8>(), 0..200)) {
                match parse_token(&body, "https://auth.test/token", &Shape::oauth(), now()) {
                    Ok(token) => prop_assert!(token.defect().is_none()),
                    Err(error) => {
                        prop_assert!(error.is_transient());
                        prop_assert!(error.to_string().starts_with("https://auth.test/token: "));
                    }
                }
            }

            #[test]
            fn any_answer_gives_a_usable_token_or_a_named_error(answer in token_answer()) {
                let body = answer.to_string();
                match parse_token(body.as_bytes(), "https://auth.test/token", &Shape::oauth(), now()) {
                    Ok(token) => {
                        prop_assert!(token.defect().is_none(), "{body}");
                        if let Some(expiry) = token.expiry() {
                            prop_assert!(expiry <= now() + LONGEST_LIFETIME + Duration::from_secs(1), "{body}");
                        }
                    }
                    Err(error) => {
                        let message = error.to_string();
                        prop_assert!(message.starts_with("https://auth.test/token: "), "{message}");
                        prop_assert!(message.len() < 400, "{message}");
                    }
                }
            }

            #[test]
            fn retry_after_reads_seconds_and_never_panics(text in ".{0,40}", secs in any::<u64>()) {
                let _ = retry_after(&text, now());
                prop_assert_eq!(retry_after(&secs.to_string(), now()), Some(Duration::from_secs(secs)));
                prop_assert_eq!(retry_after(&format!("  {secs} "), now()), Some(Duration::from_secs(secs)));
            }

            #[test]
            fn retry_after_dates_are_waits_from_now(ahead in 0u64..1_000_000_000) {
                let at = now() + Duration::from_secs(ahead);
                let text = httpdate::fmt_http_date(at);
                prop_assert_eq!(retry_after(&text, now()), Some(Duration::from_secs(ahead)));
                // A date in the past means "now".
                let past = httpdate::fmt_http_date(now() - Duration::from_secs(ahead));
                prop_assert_eq!(retry_after(&past, now()), Some(Duration::ZERO));
            }

            #[test]
            fn the_classifier_follows_the_status_and_the_oauth_code(
                status in 100u16..600,
                body in proptest::collection::vec(any::<u8>(), 0..120),
            ) {
                let error = OAuthError::parse(&body);
                let kind = classify(status, &error);
                let temporary = matches!(error.error.as_deref(), Some("temporarily_unavailable" | "slow_down"));
                let expected = if matches!(status, 408 | 429 | 500..=599) || temporary {
                    FetchErrorKind::Transient
                } else {
                    FetchErrorKind::Permanent
                };
                prop_assert_eq!(kind, expected);
            }

            #[test]
            fn oauth_codes_decide_for_any_4xx(status in 400u16..500, code in "[a-z_]{1,30}") {
                let body = serde_json::json!({"error": code}).to_string();
                let kind = classify(status, &OAuthError::parse(body.as_bytes()));
                let transient = matches!(status, 408 | 429)
                    || code == "temporarily_unavailable"
                    || code == "slow_down";
                prop_assert_eq!(kind == FetchErrorKind::Transient, transient);
            }
        }
    }
}
