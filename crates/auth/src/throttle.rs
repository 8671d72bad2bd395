//! Throttling of token requests per client.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use crate::{AuthConfig, AuthError, lock};

/// Sliding-window counter of token requests that puts a client into a
/// cool-down after more than `limit` requests within `window`.
///
/// State is kept in memory only, so each replica throttles on its own and a
/// restart clears running cool-downs.
pub(crate) struct TokenRequestThrottle {
    limit: usize,
    window: TimeDelta,
    /// `window` as configured, for error messages.
    window_secs: u64,
    cooldown: TimeDelta,
    clients: Mutex<HashMap<String, ThrottleState>>,
}

#[derive(Default)]
struct ThrottleState {
    /// Times of the requests within the window, oldest first.
    recent: VecDeque<DateTime<Utc>>,
    cooldown_until: Option<DateTime<Utc>>,
}

impl TokenRequestThrottle {
    /// Creates a throttle from a validated configuration.
    pub(crate) fn new(config: &AuthConfig) -> Self {
        Self {
            limit: config.token_requests_per_window as usize,
            window: seconds(config.token_request_window_secs),
            window_secs: config.token_request_window_secs,
            cooldown: seconds(config.token_cooldown_secs),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Records a token request of `client_id` at `now`.
    ///
    /// Every request counts, whether or not its secret turns out to be valid,
    /// so the throttle also slows down secret guessing. The request that
    /// exceeds the limit is rejected and starts the cool-down, and the
    /// client's request history is cleared when the cool-down starts.
    ///
    /// # Errors
    /// [`AuthError::TokenRequestsThrottled`] while the client is in its cool-down.
    pub(crate) fn record(&self, client_id: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
        let mut clients = lock(&self.clients);
        let state = clients.entry(client_id.to_owned()).or_default();

        if let Some(until) = state.cooldown_until {
            if now < until {
                return Err(self.throttled(client_id, until, now));
            }
            state.cooldown_until = None;
        }

        let window_start = now - self.window;
        while state
            .recent
            .front()
            .is_some_and(|&time| time <= window_start)
        {
            state.recent.pop_front();
        }
        state.recent.push_back(now);

        if state.recent.len() > self.limit {
            let until = now + self.cooldown;
            state.cooldown_until = Some(until);
            state.recent.clear();
            tracing::warn!(client_id, %until, "too many token requests, starting cool-down");
            return Err(self.throttled(client_id, until, now));
        }
        Ok(())
    }

    fn throttled(&self, client_id: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> AuthError {
        AuthError::TokenRequestsThrottled {
            client_id: client_id.to_owned(),
            limit: u32::try_from(self.limit).unwrap_or(u32::MAX),
            window_secs: self.window_secs,
            until,
            retry_after: (until - now).to_std().unwrap_or_default(),
        }
    }
}

/// Converts validated configuration seconds; `AuthConfig::validate` keeps them in range.
pub(crate) fn seconds(secs: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}
