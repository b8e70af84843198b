//! Keeping secrets out of the text a server sends back: every way a secret can come back
//! (raw, form- or percent-encoded, inside a base64 `Basic` value, JSON-escaped, case-folded
//! by a URL parser) is replaced with `[redacted]`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

const REDACTED: &str = "[redacted]";

/// `text` with every encoding of every secret replaced (matched without regard to ASCII case).
/// Apply it before any truncation: a cut secret is no longer recognised.
pub(crate) fn scrub(text: String, secrets: &[&SecretString]) -> String {
    let forms: Vec<String> = secrets
        .iter()
        .map(|secret| secret.expose_secret())
        .filter(|secret| !secret.is_empty())
        .flat_map(encodings)
        .collect();
    if forms.is_empty() {
        return text;
    }
    let mut text = text;
    for form in &forms {
        text = replace_ignoring_case(&text, form);
    }
    redact_base64_holding(&text, &forms)
}

/// A form body's encoding (`+` for space).
fn form_encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Percent-encoding of everything but unreserved characters.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The ways `secret` can appear in a server's echo of our request: raw, encoded once as we
/// sent it, and encoded once more by a server that quotes our body in a URL.
fn encodings(secret: &str) -> Vec<String> {
    let once = [
        secret.to_owned(),
        form_encoded(secret),
        percent_encoded(secret),
    ];
    let mut forms: Vec<String> = once
        .iter()
        .flat_map(|form| [form.clone(), form_encoded(form), percent_encoded(form)])
        .collect();
    // JSON string escaping.
    if let Ok(quoted) = serde_json::to_string(secret) {
        forms.push(quoted[1..quoted.len() - 1].to_owned());
    }
    // As a URL parser writes it into a path (an echoed `Location`).
    if let Ok(mut url) = Url::parse("http://h/") {
        url.set_path(secret);
        forms.push(url.path().trim_start_matches('/').to_owned());
    }
    forms.retain(|form| !form.is_empty());
    forms.sort();
    forms.dedup();
    // Longest first, so a longer encoding is not half-replaced by a shorter one.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms
}

/// Replaces every ASCII-case-insensitive occurrence of `needle`.
fn replace_ignoring_case(text: &str, needle: &str) -> String {
    let (haystack, needle) = (text.to_ascii_lowercase(), needle.to_ascii_lowercase());
    if !haystack.contains(&needle) {
        return text.to_owned();
    }
    // Lowercasing ASCII keeps every byte offset, so matches map back onto `text`.
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in haystack.match_indices(&needle) {
        if at < last {
            continue;
        }
        out.push_str(&text[last..at]);
        out.push_str(REDACTED);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

/// Whether `word`, read as base64, decodes to text holding one of `forms`.
fn decodes_to_secret(word: &str, forms: &[String]) -> bool {
    if word.len() < 8 {
        return false;
    }
    let bare = word.trim_end_matches('=');
    let decoded = STANDARD_NO_PAD
        .decode(bare)
        .or_else(|_| URL_SAFE_NO_PAD.decode(bare));
    decoded.is_ok_and(|bytes| {
        let decoded = String::from_utf8_lossy(&bytes);
        forms.iter().any(|form| decoded.contains(form.as_str()))
    })
}

/// Redacts base64 words (a `Basic` value, a base64 body) whose decoding holds a secret. A word
/// joined to others by `+` (a form-encoded echo: `Basic+<value>`) is tried piece by piece too.
fn redact_base64_holding(text: &str, forms: &[String]) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_' | '=');
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if decodes_to_secret(word, forms) {
            out.push_str(REDACTED);
        } else {
            let pieces: Vec<&str> = word
                .split('+')
                .map(|piece| {
                    if decodes_to_secret(piece, forms) {
                        REDACTED
                    } else {
                        piece
                    }
                })
                .collect();
            out.push_str(&pieces.join("+"));
        }
        word.clear();
    };
    for c in text.chars() {
        if is_b64(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn every_encoding_is_redacted() {
        let s = "p+a:s/s%w&o=rd é";
        let key = secret(s);
        let form: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
        let basic = STANDARD.encode(format!("client-1:{form}"));
        let mut url = Url::parse("http://h/").unwrap();
        url.set_path(s);
        let echoes = [
            format!("you sent client_secret={form}"),
            format!("bad Authorization: Basic {basic}"),
            format!("see {url}"),
            format!("raw {s} and upper {}", form.to_ascii_uppercase()),
            format!("json {}", serde_json::to_string(s).unwrap()),
        ];
        for echo in echoes {
            let scrubbed = scrub(echo.clone(), &[&key]);
            assert!(scrubbed.contains(REDACTED), "{echo} -> {scrubbed}");
            for form in encodings(s) {
                assert!(
                    !scrubbed
                        .to_ascii_lowercase()
                        .contains(&form.to_ascii_lowercase()),
                    "{echo} -> {scrubbed}"
                );
            }
            assert!(!scrubbed.contains(&basic));
        }
    }

    #[test]
    fn a_host_lowercased_by_a_url_parser_is_redacted() {
        let key = secret("KeyInHost42");
        let scrubbed = scrub(
            "redirected to http://keyinhost42.evil.test/".into(),
            &[&key],
        );
        assert_eq!(scrubbed, "redirected to http://[redacted].evil.test/");
    }

    #[test]
    fn text_without_secrets_is_untouched() {
        let key = secret("k-123");
        let text = "invalid_client (dGhpcyBpcyBmaW5l is base64 of nothing secret)";
        assert_eq!(scrub(text.into(), &[&key, &secret("")]), text);
    }

    proptest! {
        #[test]
        fn no_encoding_of_a_secret_survives(
            s in "[ -~]{4,24}",
            before in "[ -~]{0,20}",
            after in "[ -~]{0,20}",
            which in 0usize..4,
        ) {
            let form: String = form_urlencoded::byte_serialize(s.as_bytes()).collect();
            let echoed = match which {
                0 => s.clone(),
                1 => form.clone(),
                2 => STANDARD.encode(format!("id:{form}")),
                _ => s.to_ascii_uppercase(),
            };
            let text = format!("{before} {echoed} {after}");
            let scrubbed = scrub(text.clone(), &[&secret(&s)]);
            prop_assert!(!scrubbed.contains(&echoed), "{text} -> {scrubbed}");
        }
    }
}
