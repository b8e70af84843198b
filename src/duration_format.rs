//! How durations are written: humantime strings (`"30s"`, `"5m"`) in configuration and logs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serde `with` module: a `Duration` as a humantime string.
pub(crate) mod humantime_serde {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format_args!(
                "invalid duration {text:?} ({e}); write it like \"30s\", \"5m\" or \"1h 30m\""
            ))
        })
    }

    /// An optional `Duration`: a humantime string or `null`.
    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            d: &Option<Duration>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] Duration);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(d)| d))
        }
    }
}

/// A duration for log lines, rounded so it reads well: `4m 12s`, `3s 500ms`, `250ms`.
pub(crate) struct Readable(pub(crate) Duration);

impl fmt::Display for Readable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let rounded = if d >= Duration::from_secs(60) {
            Duration::from_secs(d.as_secs())
        } else {
            Duration::from_millis(d.as_millis() as u64)
        };
        write!(f, "{}", humantime::format_duration(rounded))
    }
}

/// How long a token has left at `now`, for log lines: `4m 12s`, or `never` without an expiry.
pub(crate) fn time_left(token: &crate::Token, now: std::time::SystemTime) -> String {
    token
        .time_left(now)
        .map_or_else(|| "never".into(), |left| Readable(left).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_rounds_to_the_unit_that_matters() {
        let d = Duration::from_millis(252_345);
        assert_eq!(Readable(d).to_string(), "4m 12s");
        assert_eq!(
            Readable(Duration::from_micros(250_400)).to_string(),
            "250ms"
        );
        assert_eq!(Readable(Duration::ZERO).to_string(), "0s");
    }
}
