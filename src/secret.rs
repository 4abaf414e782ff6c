//! A string that never shows itself in logs or Debug output.

use std::fmt;

/// What every secret prints as.
pub const MASK: &str = "********";

/// A token, password or key. `Debug` and `Display` print [`MASK`]; the value
/// is reachable only through [`Secret::expose`], at the place it is sent.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the wire only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A serde error message without the offending value: `invalid type:
/// integer `12345`, expected a string` becomes `invalid type: integer,
/// expected a string`, so a credential of the wrong type is not echoed.
pub fn redact_serde_message(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let (got, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let kind = got.split(['`', '"']).next().unwrap_or("value").trim();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{expected}")
            };
            return format!("{prefix}{kind}{expected}");
        }
    }
    msg.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_their_values() {
        let cases = [
            (
                "invalid type: integer `12345`, expected a string",
                "invalid type: integer, expected a string",
            ),
            (
                "invalid type: string \"hunter2\", expected u32 at line 1",
                "invalid type: string, expected u32 at line 1",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "invalid value: integer, expected u32",
            ),
            (
                "invalid type: floating point `6.5`, expected a string",
                "invalid type: floating point, expected a string",
            ),
            (
                "unknown field `x`, expected `a`",
                "unknown field `x`, expected `a`",
            ),
        ];
        for (given, want) in cases {
            assert_eq!(redact_serde_message(given), want);
        }
    }

    #[test]
    fn never_formats_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "******** ******** Some(********)"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
