//! Parsing and writing the time values peers send: delay hints (`Retry-After`,
//! `grpc-retry-pushback-ms`) and deadlines (`grpc-timeout`, the millisecond deadline
//! header).
//!
//! Every value here comes from a peer, so every parser takes arbitrary bytes, never
//! panics, and clamps what it returns: delay hints to [`MAX_DELAY_HINT`] (far above
//! any sensible `retry_after_cap`, so a retry layer still sees "too long" and does not
//! retry, but small enough that adding it to an instant cannot overflow). Garbage is
//! ignored and reported with a `tracing` debug event at target `buttress::http`.
//!
//! - [`retry_after`]: delta-seconds (`120`) or an HTTP-date (`Fri, 31 Dec 1999
//!   23:59:59 GMT`, and the two obsolete formats); a date in the past is no delay.
//!   Leading and trailing whitespace is tolerated.
//! - [`grpc_pushback`]: gRPC's retry design (A6): a non-negative integer is a delay in
//!   milliseconds; a negative or malformed value means *do not retry*.
//! - [`grpc_timeout`]: gRPC's `TimeoutValue TimeoutUnit`, at most 8 ASCII digits and
//!   one of `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds),
//!   `u` (microseconds), `n` (nanoseconds).
//! - [`timeout_ms`]: whole milliseconds, the format of buttress's deadline header.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use buttress_http::hint::{self, Pushback};
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
//! assert_eq!(hint::retry_after(b" 120 ", now), Some(Duration::from_secs(120)));
//! assert_eq!(hint::retry_after(b"Sun, 09 Sep 2001 01:49:00 GMT", now), Some(Duration::from_secs(140)));
//! assert_eq!(hint::retry_after(b"soon", now), None);
//! assert_eq!(hint::grpc_pushback(b"250"), Pushback::Delay(Duration::from_millis(250)));
//! assert_eq!(hint::grpc_pushback(b"-1"), Pushback::DoNotRetry);
//! assert_eq!(hint::grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
//! assert_eq!(hint::format_grpc_timeout(Duration::from_millis(1500)), "1500000u");
//! ```

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// The largest delay hint a parser returns (one day); longer ones are clamped to it.
pub const MAX_DELAY_HINT: Duration = Duration::from_secs(24 * 60 * 60);

/// The most digits gRPC allows in a `grpc-timeout` value.
const GRPC_TIMEOUT_DIGITS: usize = 8;

/// What a `grpc-retry-pushback-ms` value asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Wait this long before retrying (clamped to [`MAX_DELAY_HINT`]).
    Delay(Duration),
    /// Do not retry: the value was negative or malformed.
    DoNotRetry,
}

/// Reports a value that did not parse; the value is peer-controlled, so it is cut
/// short and escaped.
fn ignored(header: &'static str, value: &[u8]) {
    let shown = String::from_utf8_lossy(&value[..value.len().min(64)]);
    tracing::debug!(target: "buttress::http", header, value = ?shown, "ignoring a malformed value");
}

/// Parses a run of ASCII digits, saturating at `u64::MAX`; `None` if empty or if any
/// byte is not a digit.
fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(n)
}

/// Parses a `Retry-After` value: delta-seconds or an HTTP-date, relative to `now`
/// (the wall clock: HTTP-dates are wall-clock times). `None` for garbage, reported
/// with a debug event; the result is at most [`MAX_DELAY_HINT`].
pub fn retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let s = value.trim_ascii();
    if let Some(secs) = digits(s) {
        return Some(Duration::from_secs(secs.min(MAX_DELAY_HINT.as_secs())));
    }
    let date = std::str::from_utf8(s)
        .ok()
        .and_then(|text| httpdate::parse_http_date(text).ok());
    match date {
        Some(at) => Some(
            at.duration_since(now)
                .unwrap_or(Duration::ZERO)
                .min(MAX_DELAY_HINT),
        ),
        None => {
            ignored("retry-after", value);
            None
        }
    }
}

/// Parses a `grpc-retry-pushback-ms` value as gRPC's retry design defines it: a
/// non-negative integer is the delay in milliseconds (at most [`MAX_DELAY_HINT`]); a
/// negative or malformed value means do not retry (malformed ones are reported with
/// a debug event).
pub fn grpc_pushback(value: &[u8]) -> Pushback {
    let s = value.trim_ascii();
    if let Some(ms) = digits(s) {
        return Pushback::Delay(Duration::from_millis(
            ms.min(MAX_DELAY_HINT.as_millis() as u64),
        ));
    }
    let negative = s.first() == Some(&b'-') && digits(&s[1..]).is_some();
    if !negative {
        ignored("grpc-retry-pushback-ms", value);
    }
    Pushback::DoNotRetry
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`,
/// `u`, `n`). `None` (reported with a debug event) for anything else. The result is at
/// most 99,999,999 hours; callers clamp it to their own maximum.
pub fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let s = value.trim_ascii();
    let parsed = match s.split_last() {
        Some((&unit, number)) if number.len() <= GRPC_TIMEOUT_DIGITS => {
            digits(number).and_then(|n| match unit {
                b'H' => Some(Duration::from_secs(n * 3600)),
                b'M' => Some(Duration::from_secs(n * 60)),
                b'S' => Some(Duration::from_secs(n)),
                b'm' => Some(Duration::from_millis(n)),
                b'u' => Some(Duration::from_micros(n)),
                b'n' => Some(Duration::from_nanos(n)),
                _ => None,
            })
        }
        _ => None,
    };
    if parsed.is_none() {
        ignored("grpc-timeout", value);
    }
    parsed
}

/// Parses a millisecond deadline header (`buttress-timeout-ms`): ASCII digits, with
/// surrounding whitespace tolerated. `None` (reported with a debug event) for anything
/// else; callers clamp the result to their own maximum.
pub fn timeout_ms(value: &[u8]) -> Option<Duration> {
    let parsed = digits(value.trim_ascii()).map(Duration::from_millis);
    if parsed.is_none() {
        ignored("timeout-ms", value);
    }
    parsed
}

/// Formats `d` as a `grpc-timeout` value in the finest unit that fits gRPC's 8 digits,
/// rounding down (the callee must not believe it has more time than the caller).
pub fn format_grpc_timeout(d: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = d.as_nanos();
    let (value, unit) = [
        (1, b'n'),
        (1_000, b'u'),
        (1_000_000, b'm'),
        (1_000_000_000, b'S'),
        (60_000_000_000, b'M'),
    ]
    .into_iter()
    .map(|(per, unit)| (nanos / per, unit))
    .find(|(v, _)| *v <= MAX)
    .unwrap_or(((nanos / 3_600_000_000_000).min(MAX), b'H'));
    let mut buf = [0u8; GRPC_TIMEOUT_DIGITS + 1];
    let mut n = value as u64;
    let mut start = GRPC_TIMEOUT_DIGITS;
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[GRPC_TIMEOUT_DIGITS] = unit;
    HeaderValue::from_bytes(&buf[start..]).unwrap_or(HeaderValue::from_static("0n"))
}

/// Whole milliseconds of `d`, rounded down (for the deadline header).
pub fn format_timeout_ms(d: Duration) -> HeaderValue {
    HeaderValue::from(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whole seconds of `d`, rounded up, as a `Retry-After` value.
pub fn format_retry_after(d: Duration) -> HeaderValue {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    HeaderValue::from(secs)
}

/// Whole milliseconds of `d`, rounded up, as a `grpc-retry-pushback-ms` value.
pub fn format_pushback(d: Duration) -> HeaderValue {
    let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 > 0);
    HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn epoch(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_delta_seconds_and_dates() {
        let now = epoch(1_000_000_000); // Sun, 09 Sep 2001 01:46:40 GMT
        assert_eq!(retry_after(b"0", now), Some(Duration::ZERO));
        assert_eq!(retry_after(b"\t7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(b"99999999999999999999999999", now),
            Some(MAX_DELAY_HINT)
        );
        assert_eq!(
            retry_after(b"Sun, 09 Sep 2001 01:46:50 GMT", now),
            Some(Duration::from_secs(10))
        );
        // RFC 850 and asctime forms.
        assert_eq!(
            retry_after(b"Sunday, 09-Sep-01 01:46:50 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(b"Sun Sep  9 01:46:50 2001", now),
            Some(Duration::from_secs(10))
        );
        // In the past: retry now.
        assert_eq!(
            retry_after(b"Sat, 01 Jan 2000 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Far future: clamped.
        assert_eq!(
            retry_after(b"Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_DELAY_HINT)
        );
        for garbage in [
            &b""[..],
            b" ",
            b"-5",
            b"1.5",
            b"soon",
            b"12 seconds",
            b"\xff\xfe",
            b"Sun, 99 Foo 2001 01:46:50 GMT",
        ] {
            assert_eq!(retry_after(garbage, now), None, "{garbage:?}");
        }
    }

    #[test]
    fn pushback_follows_grpc_retry_design() {
        assert_eq!(grpc_pushback(b"0"), Pushback::Delay(Duration::ZERO));
        assert_eq!(
            grpc_pushback(b"1500"),
            Pushback::Delay(Duration::from_millis(1500))
        );
        assert_eq!(
            grpc_pushback(b"18446744073709551616000"),
            Pushback::Delay(MAX_DELAY_HINT)
        );
        for no in [
            &b"-1"[..],
            b"-0",
            b"-999999999999999999999",
            b"",
            b"abc",
            b"1.5",
            b"+5",
            b"-",
            b"1e3",
        ] {
            assert_eq!(grpc_pushback(no), Pushback::DoNotRetry, "{no:?}");
        }
    }

    #[test]
    fn grpc_timeout_every_unit() {
        let cases: [(&[u8], Duration); 8] = [
            (b"2H", Duration::from_secs(7200)),
            (b"3M", Duration::from_secs(180)),
            (b"4S", Duration::from_secs(4)),
            (b"250m", Duration::from_millis(250)),
            (b"7u", Duration::from_micros(7)),
            (b"99999999n", Duration::from_nanos(99_999_999)),
            (b"0m", Duration::ZERO),
            (b"99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (v, d) in cases {
            assert_eq!(grpc_timeout(v), Some(d), "{v:?}");
        }
        for bad in [
            &b""[..],
            b"m",
            b"100",
            b"100x",
            b"100ms",
            b"123456789m",
            b"-1S",
            b"1 S",
            b"1h",
        ] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeout_formatting_picks_the_finest_unit_that_fits() {
        assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
        assert_eq!(
            format_grpc_timeout(Duration::from_nanos(99_999_999)),
            "99999999n"
        );
        assert_eq!(format_grpc_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(300)), "300000m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(100_000_000 * 60)),
            "1666666H"
        );
        assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn response_values_round_up() {
        assert_eq!(format_retry_after(Duration::from_millis(1001)), "2");
        assert_eq!(format_retry_after(Duration::from_secs(3)), "3");
        assert_eq!(format_retry_after(Duration::ZERO), "0");
        assert_eq!(format_pushback(Duration::from_micros(1500)), "2");
        assert_eq!(format_pushback(Duration::from_millis(40)), "40");
        assert_eq!(format_timeout_ms(Duration::from_micros(2999)), "2");
        assert_eq!(timeout_ms(b" 250 "), Some(Duration::from_millis(250)));
        assert_eq!(timeout_ms(b"2.5"), None);
    }

    proptest! {
        #[test]
        fn retry_after_never_panics_nor_exceeds_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..64), now in 0u64..10_000_000_000) {
            if let Some(d) = retry_after(&bytes, epoch(now)) {
                prop_assert!(d <= MAX_DELAY_HINT);
            }
        }

        #[test]
        fn retry_after_dates_anywhere(now in 0u64..253_402_300_799, at in 0u64..253_402_300_799) {
            let value = httpdate::fmt_http_date(epoch(at));
            let expected = Duration::from_secs(at.saturating_sub(now)).min(MAX_DELAY_HINT);
            prop_assert_eq!(retry_after(value.as_bytes(), epoch(now)), Some(expected));
        }

        #[test]
        fn pushback_never_panics_nor_exceeds_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Pushback::Delay(d) = grpc_pushback(&bytes) {
                prop_assert!(d <= MAX_DELAY_HINT);
                // Only a plain non-negative integer is a delay.
                prop_assert!(bytes.trim_ascii().iter().all(u8::is_ascii_digit));
            }
        }

        #[test]
        fn grpc_timeout_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Some(d) = grpc_timeout(&bytes) {
                prop_assert!(d <= Duration::from_secs(99_999_999 * 3600));
            }
        }

        #[test]
        fn grpc_timeout_matches_a_reference(n in 0u64..100_000_000, unit in proptest::sample::select(vec!['H', 'M', 'S', 'm', 'u', 'n'])) {
            let nanos_per: u128 = match unit {
                'H' => 3_600_000_000_000,
                'M' => 60_000_000_000,
                'S' => 1_000_000_000,
                'm' => 1_000_000,
                'u' => 1_000,
                _ => 1,
            };
            let parsed = grpc_timeout(format!("{n}{unit}").as_bytes()).unwrap();
            prop_assert_eq!(parsed.as_nanos(), u128::from(n) * nanos_per);
        }

        #[test]
        fn grpc_timeout_format_round_trips_without_gaining_time(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            let v = format_grpc_timeout(d);
            prop_assert!(v.len() <= 9);
            let back = grpc_timeout(v.as_bytes()).unwrap();
            prop_assert!(back <= d);
            // Exact below 100 ms; past that a coarser unit loses under one part in
            // 10^5 (the value in the coarser unit is at least 10^5).
            prop_assert!(d - back <= d / 100_000);
            if nanos < 100_000_000 {
                prop_assert_eq!(back, d);
            }
        }
    }
}
