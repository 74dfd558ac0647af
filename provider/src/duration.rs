//! Durations as Terraform configurations write them (`timeouts {}`, a token's `ttl`): Go's
//! `time.ParseDuration`, as Terraform reads its own timeouts (through `go-parse-duration`, a port
//! of it).

use std::time::Duration;

/// Parses `90s`, `20m`, `1h30m`, `1.5h`, `500ms`, `0s`. `None` when `s` is not such a duration
/// or is negative; a zero duration parses, so the caller can say it is out of range rather than
/// misread.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let nanos = go_parse_duration::parse_duration(s.trim()).ok()?;
    u64::try_from(nanos).ok().map(Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_terraform_timeouts() {
        assert_eq!(parse_duration("20m"), Some(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45s"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_duration("2h45m30.5s"),
            Some(Duration::from_millis(9_930_500))
        );
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "20",
            "m",
            "20x",
            "-5m",
            "1h 30m",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
