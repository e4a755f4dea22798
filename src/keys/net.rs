//! The one network policy every remote key source follows (AWS KMS, GCP KMS, Azure Key Vault,
//! Vault transit): how long to wait for a connection and a reply, and how often to try again.
//!
//! The numbers are chosen for a CLI that often runs in CI: an unreachable endpoint must fail in
//! seconds (so a file that another key could open is not held up), while a slow but working
//! service still gets a reply through. `VEIL_KEY_SERVICE_TIMEOUT` (seconds) replaces the reply
//! timeout, and caps the connect timeout, for every source ([`timeouts`]); Vault's own
//! `VAULT_CLIENT_TIMEOUT` still wins for Vault.
//!
//! Each source applies the policy with its own client: the AWS SDK's timeout and retry config,
//! the GCP client's attempt timeout and retry policy, and for Vault ureq's timeouts with
//! [`with_retries`]. The keyring (`keyring.rs`) decides *when* these services are asked: only
//! after the offline keys of a group failed, and then all of the group's network keys at once.

use std::time::Duration;

/// Time to establish a TCP (and TLS) connection to a key service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time to wait for a whole reply once connected.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts per call, the first included; only transient failures (connection errors, 429, 5xx)
/// are tried again.
pub const ATTEMPTS: u32 = 3;

/// The variable that overrides the reply timeout (seconds, decimals allowed, more than zero).
pub const TIMEOUT_VAR: &str = "VEIL_KEY_SERVICE_TIMEOUT";

/// How long one attempt may wait: to connect, and for the whole reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: CONNECT_TIMEOUT,
            read: READ_TIMEOUT,
        }
    }
}

impl Timeouts {
    /// The defaults, or with [`TIMEOUT_VAR`] set (in `env`) a reply timeout of that many seconds
    /// and a connect timeout of at most as much. A malformed value is an error naming the
    /// variable, reported by the key that was to use it.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Timeouts, String> {
        let Some(text) = env(TIMEOUT_VAR).filter(|t| !t.trim().is_empty()) else {
            return Ok(Timeouts::default());
        };
        let seconds = text.trim().trim_end_matches('s');
        let read = seconds
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| format!("{TIMEOUT_VAR}={text:?} is not a number of seconds"))?;
        Ok(Timeouts {
            connect: CONNECT_TIMEOUT.min(read),
            read,
        })
    }
}

/// The timeouts for this process ([`Timeouts::from_env`] with its environment).
pub fn timeouts() -> Result<Timeouts, String> {
    Timeouts::from_env(|name| std::env::var(name).ok())
}

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
    fn the_variable_shortens_the_reply_timeout_and_caps_the_connect_timeout() {
        let with = |value: &'static str| {
            Timeouts::from_env(move |name| (name == TIMEOUT_VAR).then(|| value.to_string()))
        };
        assert_eq!(Timeouts::from_env(|_| None), Ok(Timeouts::default()));
        assert_eq!(with(""), Ok(Timeouts::default()));
        assert_eq!(
            with("2"),
            Ok(Timeouts {
                connect: Duration::from_secs(2),
                read: Duration::from_secs(2)
            })
        );
        assert_eq!(
            with("120s"),
            Ok(Timeouts {
                connect: CONNECT_TIMEOUT,
                read: Duration::from_secs(120)
            })
        );
        assert_eq!(with("0.5").unwrap().read, Duration::from_millis(500));
        for bad in ["0", "-1", "soon", "nan", "1e400"] {
            let err = with(bad).unwrap_err();
            assert!(err.contains(TIMEOUT_VAR), "{err}");
        }
    }

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
