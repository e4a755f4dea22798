//! The one network policy every remote key source follows (AWS KMS, GCP KMS, Azure Key Vault,
//! Vault transit): how long to wait for a connection and a reply, and how often to try again.
//!
//! The numbers are chosen for a CLI that often runs in CI: an unreachable endpoint must fail in
//! seconds (so a file that another key could open is not held up), while a slow but working
//! service still gets a reply through.

use std::time::Duration;

/// Time to establish a TCP (and TLS) connection to a key service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time to wait for a whole reply once connected.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts per call, the first included; only transient failures (connection errors, 429, 5xx)
/// are tried again.
pub const ATTEMPTS: u32 = 3;

/// The pause before attempt `attempt` (2, 3, …): 200 ms, doubling, at most 1 s.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(2).min(3);
    (Duration::from_millis(200) * 2u32.pow(exponent)).min(Duration::from_secs(1))
}

/// Runs `call` up to [`ATTEMPTS`] times, pausing between attempts, while `transient` says the
/// error is worth another try.
pub fn with_retries<T, E>(
    mut call: impl FnMut() -> Result<T, E>,
    transient: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(err) if attempt < ATTEMPTS && transient(&err) => {
                attempt += 1;
                std::thread::sleep(backoff(attempt));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn backoff_doubles_up_to_a_second() {
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(9), Duration::from_secs(1));
    }

    #[test]
    fn retries_only_transient_errors_and_at_most_attempts_times() {
        let calls = Cell::new(0);
        let result: Result<(), &str> = with_retries(
            || {
                calls.set(calls.get() + 1);
                Err("unavailable")
            },
            |_| true,
        );
        assert_eq!(result, Err("unavailable"));
        assert_eq!(calls.get(), ATTEMPTS);

        calls.set(0);
        let result: Result<(), &str> = with_retries(
            || {
                calls.set(calls.get() + 1);
                Err("denied")
            },
            |_| false,
        );
        assert_eq!(result, Err("denied"));
        assert_eq!(calls.get(), 1);

        calls.set(0);
        let result = with_retries(
            || {
                calls.set(calls.get() + 1);
                if calls.get() < 2 {
                    Err("unavailable")
                } else {
                    Ok(7)
                }
            },
            |_| true,
        );
        assert_eq!(result, Ok(7));
        assert_eq!(calls.get(), 2);
    }
}
