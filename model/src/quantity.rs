//! Kubernetes resource quantities (`250m`, `512Mi`, `1e3`), as requests and limits take them.

use crate::error::{Check, FieldError};

/// A Kubernetes resource quantity such as `250m`, `1`, `1.5`, `512Mi`, `2G` or `1e3`.
pub fn quantity(field: &str, v: &str) -> Check {
    if quantity_value(v).is_some() {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{v:?} is not a Kubernetes quantity such as \"250m\", \"2\", \"512Mi\", \"1Gi\" \
                 or \"1e3\""
            ),
        ))
    }
}

/// The value of a Kubernetes quantity (`<number><suffix>`, the suffix binary such as `Mi`,
/// decimal such as `k` or `m`, or an exponent such as `e3`), if `v` is one.
pub fn quantity_value(v: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("", 1.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
    ];
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let num_ok =
        !num.is_empty() && num.matches('.').count() <= 1 && num != "." && !num.starts_with('.');
    if !num_ok {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    if let Some((_, m)) = SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(n * m);
    }
    // A decimal exponent: `e3`, `E-2`.
    let exp = suffix.strip_prefix(['e', 'E'])?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(n * 10f64.powi(exp.parse::<i32>().ok()?))
}
