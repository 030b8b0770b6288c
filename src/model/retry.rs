use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Duration;

/// How often and how patiently a failed step is tried again.
///
/// Written as a mapping, or as a number of retries (`retry: 0` = try once).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total attempts, including the first (at least 1).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt.
    #[serde(default = "default_delay")]
    pub delay: Duration,
    /// Each further wait is the previous one times this factor (at least 1.0).
    #[serde(default = "default_backoff")]
    pub backoff: f64,
    /// Upper bound for any single wait.
    #[serde(default = "default_max_delay")]
    pub max_delay: Duration,
}

fn default_attempts() -> u32 {
    1
}
fn default_delay() -> Duration {
    Duration(std::time::Duration::from_secs(10))
}
fn default_backoff() -> f64 {
    2.0
}
fn default_max_delay() -> Duration {
    Duration(std::time::Duration::from_secs(300))
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: default_attempts(),
            delay: default_delay(),
            backoff: default_backoff(),
            max_delay: default_max_delay(),
        }
    }
}

impl RetryPolicy {
    /// Semantic checks that the type system does not catch.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.attempts == 0 {
            out.push("`attempts` must be at least 1 (1 means: no retry)".to_string());
        }
        if !(self.backoff.is_finite() && self.backoff >= 1.0) {
            out.push(format!(
                "`backoff` must be a number of at least 1.0, not {}",
                self.backoff
            ));
        }
        if self.max_delay < self.delay {
            out.push(format!(
                "`max_delay` ({}) is shorter than `delay` ({})",
                self.max_delay, self.delay
            ));
        }
        out
    }

    /// The wait before attempt `n` (2-based: the wait before the second attempt is `delay`).
    pub fn delay_before(&self, attempt: u32) -> std::time::Duration {
        let exp = attempt.saturating_sub(2).min(64) as i32;
        let secs = self.delay.0.as_secs_f64() * self.backoff.powi(exp);
        let capped = secs.min(self.max_delay.0.as_secs_f64());
        std::time::Duration::from_secs_f64(capped.max(0.0))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFields {
    #[serde(default = "default_attempts")]
    attempts: u32,
    #[serde(default = "default_delay")]
    delay: Duration,
    #[serde(default = "default_backoff")]
    backoff: f64,
    #[serde(default = "default_max_delay")]
    max_delay: Duration,
}

impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RetryPolicy, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RetryPolicy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of retries or a mapping with `attempts`, `delay`, `backoff`, `max_delay`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetryPolicy, E> {
                let retries = u32::try_from(v).map_err(|_| E::custom("too many retries"))?;
                Ok(RetryPolicy {
                    attempts: retries.saturating_add(1),
                    ..RetryPolicy::default()
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetryPolicy, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!(
                        "retry count must not be negative, found {v}"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RetryPolicy, A::Error> {
                let f = RetryFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RetryPolicy {
                    attempts: f.attempts,
                    delay: f.delay,
                    backoff: f.backoff,
                    max_delay: f.max_delay,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            attempts: 5,
            delay: Duration::parse("10s").expect("d"),
            backoff: 2.0,
            max_delay: Duration::parse("25s").expect("d"),
        };
        assert_eq!(p.delay_before(2).as_secs(), 10);
        assert_eq!(p.delay_before(3).as_secs(), 20);
        assert_eq!(p.delay_before(4).as_secs(), 25);
    }
}
