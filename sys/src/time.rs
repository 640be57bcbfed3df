//! Timeout conversion shared by the waiting calls.

use std::time::Duration;

/// Converts a wait timeout to the `int` milliseconds of `poll(2)` and
/// `epoll_wait(2)`.
///
/// - `None` (wait forever) becomes `-1`;
/// - `Some(Duration::ZERO)` stays `0` (do not block);
/// - any other duration is rounded **up** to whole milliseconds, so a wait
///   never ends before the requested time (1 µs becomes 1 ms, not 0);
/// - values beyond `i32::MAX` ms (about 24.8 days) are clamped to `i32::MAX`.
pub fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_nanos(1_000_001))), 2);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(timeout_ms(Some(Duration::new(1, 1))), 1001);
        assert_eq!(
            timeout_ms(Some(Duration::from_millis(i32::MAX as u64))),
            i32::MAX
        );
        assert_eq!(
            timeout_ms(Some(Duration::from_millis(i32::MAX as u64 + 1))),
            i32::MAX
        );
        assert_eq!(timeout_ms(Some(Duration::MAX)), i32::MAX);
    }
}
