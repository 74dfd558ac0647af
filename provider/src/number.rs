//! Whole-number attributes as Terraform sends them.
//!
//! Terraform numbers are arbitrary-precision; over the wire (msgpack) a whole number that fits
//! 64 bits arrives as an integer, `1.5` or `2^63` as a float, anything else as text. Decoding
//! such attributes straight into `i64` fails for the last two, and the failure surfaces as a
//! serde message on the whole block ("data did not match any variant of untagged enum Value").
//! (Terraform sends `pow(2, 63)` as the text "9223372036854776000", its own shortest form.)
//! [`Number`] takes every form, so the plan-time check can name the attribute and say what is
//! allowed.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Terraform number: whole and within `i64`, or anything else, kept as Terraform wrote it.
#[derive(Debug, Clone, PartialEq)]
pub enum Number {
    Whole(i64),
    /// A fraction, or a whole number beyond 64 bits.
    Other(String),
}

impl Number {
    /// Why this number cannot be a whole number of the attribute, if it cannot.
    pub fn whole(&self) -> Result<i64, String> {
        match self {
            Number::Whole(n) => Ok(*n),
            Number::Other(text) => {
                let digits = text.trim_start_matches('-');
                if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                    Err(format!(
                        "{text} is too large: whole numbers here are at most {}",
                        i64::MAX
                    ))
                } else {
                    Err(format!("{text} is not a whole number"))
                }
            }
        }
    }
}

impl From<i64> for Number {
    fn from(n: i64) -> Self {
        Number::Whole(n)
    }
}

impl From<u32> for Number {
    fn from(n: u32) -> Self {
        Number::Whole(i64::from(n))
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Number::Whole(n) => s.serialize_i64(*n),
            // Terraform reads a number from text too; such a value never reaches state (the
            // plan refuses it), but a plan echoes it back first.
            Number::Other(text) => match text.parse::<f64>() {
                Ok(f) if f.is_finite() => s.serialize_f64(f),
                _ => s.serialize_str(text),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Number, E> {
                Ok(Number::Whole(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Number, E> {
                Ok(i64::try_from(n).map_or_else(|_| Number::Other(n.to_string()), Number::Whole))
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Number, E> {
                // Exactly whole and inside i64 (2^63 itself is not: it rounds to i64::MAX).
                const TWO_63: f64 = 9.223_372_036_854_776e18;
                if f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f) {
                    Ok(Number::Whole(f as i64))
                } else if f.fract() == 0.0 && f.is_finite() {
                    Ok(Number::Other(format!("{f:.0}")))
                } else {
                    Ok(Number::Other(f.to_string()))
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Number, E> {
                Ok(s.parse::<i64>()
                    .map_or_else(|_| Number::Other(s.to_owned()), Number::Whole))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tf_provider::value::Value;

    fn from_msgpack(bytes: Vec<u8>) -> Value<Number> {
        rmp_serde::from_slice(&bytes).expect("decodes")
    }

    #[test]
    fn every_form_terraform_sends_decodes_and_says_what_is_wrong() {
        let int = from_msgpack(rmp_serde::to_vec(&-1i64).unwrap());
        assert_eq!(int, Value::Value(Number::Whole(-1)));
        let frac = from_msgpack(rmp_serde::to_vec(&1.5f64).unwrap());
        assert_eq!(
            frac.as_ref_option().unwrap().whole(),
            Err("1.5 is not a whole number".to_owned())
        );
        let big = from_msgpack(rmp_serde::to_vec(&9.223_372_036_854_776e18f64).unwrap());
        assert_eq!(
            big.as_ref_option().unwrap().whole(),
            Err(format!(
                "9223372036854775808 is too large: whole numbers here are at most {}",
                i64::MAX
            ))
        );
        let text = from_msgpack(rmp_serde::to_vec("100000000000000000000000001").unwrap());
        assert!(text
            .as_ref_option()
            .unwrap()
            .whole()
            .unwrap_err()
            .contains("too large"));
        let whole_float = from_msgpack(rmp_serde::to_vec(&3.0f64).unwrap());
        assert_eq!(whole_float, Value::Value(Number::Whole(3)));
        let null = from_msgpack(rmp_serde::to_vec(&()).unwrap());
        assert_eq!(null, Value::Null);
    }

    #[test]
    fn numbers_go_back_as_terraform_sent_them() {
        let back: f64 =
            rmp_serde::from_slice(&rmp_serde::to_vec(&Number::Other("1.5".into())).unwrap())
                .unwrap();
        assert_eq!(back, 1.5);
        let back: i64 =
            rmp_serde::from_slice(&rmp_serde::to_vec(&Number::Whole(7)).unwrap()).unwrap();
        assert_eq!(back, 7);
    }
}
