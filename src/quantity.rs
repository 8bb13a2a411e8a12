//! The two size notations a SparkApplication mixes, parsed strictly.
//!
//! Kubernetes quantities (`coreLimit: 1200m`, `memoryLimit: 1Gi`) and Spark/JVM sizes
//! (`memory: 512m` means 512 MiB to Spark, but 0.512 bytes to Kubernetes). Mixing them up is a
//! classic bug, so each field is parsed with the notation its consumer uses.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("{0:?} is not a Kubernetes quantity (examples: 500m, 2, 1.5, 512Mi, 1G)")]
    Kubernetes(String),
    #[error("{0:?} is not a Spark size (examples: 512m, 2g, 1024k, 1t; plain numbers are MiB)")]
    Spark(String),
}

/// Parses a Kubernetes quantity into its value in base units (cores or bytes), as f64.
/// Accepts decimal SI (`k M G T P E`, `m` milli, `n`/`u` tiny), binary (`Ki Mi Gi Ti Pi Ei`)
/// and exponent (`1e3`) suffixes, like apimachinery's `resource.ParseQuantity`.
pub fn parse_kubernetes(s: &str) -> Result<f64, QuantityError> {
    let err = || QuantityError::Kubernetes(s.to_string());
    let t = s.trim();
    if t.is_empty() || t != s {
        return Err(err());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') && num.len() == 1 {
        return Err(err());
    }
    // apimachinery allows one leading sign and digits with at most one '.'.
    let digits = num.strip_prefix(['+', '-']).unwrap_or(num);
    if digits.is_empty()
        || digits.contains(['+', '-'])
        || digits.matches('.').count() > 1
        || !digits.chars().any(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let value: f64 = num.parse().map_err(|_| err())?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err())?;
            10f64.powi(exp)
        }
        _ => return Err(err()),
    };
    Ok(value * factor)
}

/// Parses a Spark/JVM size string (`spark.driver.memory` style) into MiB, as Spark's
/// `Utils.memoryStringToMb` does: suffixes b, k/kb, m/mb, g/gb, t/tb, p/pb (case-insensitive);
/// no suffix means MiB for memory settings. Fractions are not allowed, as in Spark.
pub fn parse_spark_mib(s: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError::Spark(s.to_string());
    let lower = s.trim().to_ascii_lowercase();
    if lower.is_empty() || lower.len() != s.len() {
        return Err(err());
    }
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, suffix) = lower.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let kib = |k: u64| k / 1024;
    let mib = match suffix {
        "" | "m" | "mb" => Some(n),
        "b" => Some(kib(kib(n))),
        "k" | "kb" => Some(kib(n)),
        "g" | "gb" => n.checked_mul(1024),
        "t" | "tb" => n.checked_mul(1024 * 1024),
        "p" | "pb" => n.checked_mul(1024 * 1024 * 1024),
        _ => return Err(err()),
    };
    mib.ok_or_else(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities() {
        assert_eq!(parse_kubernetes("1200m"), Ok(1.2));
        assert_eq!(parse_kubernetes("2"), Ok(2.0));
        assert_eq!(parse_kubernetes("0.5"), Ok(0.5));
        assert_eq!(parse_kubernetes("512Mi"), Ok(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_kubernetes("1G"), Ok(1e9));
        assert_eq!(parse_kubernetes("1e3"), Ok(1000.0));
        for bad in ["", " 1", "1 ", "abc", "1.2.3", "1Gb", "m", "--1", "1x", "."] {
            assert!(parse_kubernetes(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn spark_sizes_are_mib() {
        assert_eq!(parse_spark_mib("512m"), Ok(512));
        assert_eq!(parse_spark_mib("512"), Ok(512));
        assert_eq!(parse_spark_mib("2g"), Ok(2048));
        assert_eq!(parse_spark_mib("2G"), Ok(2048));
        assert_eq!(parse_spark_mib("1t"), Ok(1024 * 1024));
        assert_eq!(parse_spark_mib("2048k"), Ok(2));
        for bad in [
            "",
            "1.5g",
            "512Mi",
            "-1g",
            "g",
            "1 g",
            "99999999999999999999p",
        ] {
            assert!(parse_spark_mib(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
