//! Webhooks: one POST of JSON per event and destination, signed with
//! HMAC-SHA-256 when the destination names a secret, and what its answer
//! means (delivered, try again later, or never).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::store::Job;

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again: why, and how long the peer asked to wait (Retry-After), if it did.
    Retry(String, Option<Duration>),
    /// Trying again would not help (a 4xx other than 408 and 429).
    Permanent(String),
}

/// The body: the job's identity, the rules that sent it, and the event.
pub fn body(job: &Job) -> String {
    json!({
        "id": job.key,
        "tree": job.tree,
        "seq": job.seq,
        "type": job.kind(),
        "rules": job.rules,
        "destination": job.dest,
        "attempt": job.attempts + 1,
        "event": job.event,
    })
    .to_string()
}

/// The idempotency key as a header carries it: every byte that is not
/// visible ASCII, and `%`, written `%XX` (a tree name may hold any byte; the
/// body's `id` is the key itself).
pub fn header_safe(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: u64, body: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        // HMAC takes a key of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// What an HTTP status means for the delivery (`now_s`: the time, for a
/// `Retry-After` given as a date).
pub fn outcome_of(status: u16, retry_after: Option<&str>, what: &str, now_s: u64) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => {
            let wait = retry_after.and_then(|s| retry_after_secs(s, now_s)).map(Duration::from_secs);
            Outcome::Retry(format!("{what} answered {status}"), wait)
        }
        _ => Outcome::Permanent(format!("{what} answered {status}: not retried (a 4xx other than 408 and 429)")),
    }
}

/// `Retry-After`: seconds, or an HTTP date (`Sun, 06 Nov 1994 08:49:37
/// GMT`), as seconds from `now_s` (0 for a date past).
fn retry_after_secs(value: &str, now_s: u64) -> Option<u64> {
    let value = value.trim();
    // Longer than a year means "much later": the caller caps it anyway.
    const YEAR: u64 = 366 * 86_400;
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        return Some(value.parse::<u64>().map_or(YEAR, |s| s.min(YEAR)));
    }
    let rest = value.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let (day, year) = (day.parse::<u32>().ok()?, year.parse::<i64>().ok()?);
    let hms: Vec<u64> = time.split(':').map(|p| p.parse::<u64>().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms[..] else {
        return None;
    };
    if !(1..=31).contains(&day) || !(1970..=9999).contains(&year) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::web::days_from_civil(year, month, day);
    let at = u64::try_from(days).ok()?.checked_mul(86_400)?.checked_add(h * 3600 + m * 60 + sec)?;
    Some(at.saturating_sub(now_s))
}

/// One attempt: POSTs the job to `url`.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secret_env: Option<&str>,
    job: &Job,
    timeout: Duration,
    now_s: u64,
) -> Outcome {
    let body = body(job);
    let mut request = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("idempotency-key", header_safe(&job.key))
        .header("quota-attempt", (job.attempts + 1).to_string());
    if let Some(var) = secret_env {
        match std::env::var(var) {
            Ok(secret) if !secret.is_empty() => {
                request = request.header("quota-signature", signature(secret.as_bytes(), now_s, &body));
            }
            _ => return Outcome::Retry(format!("the environment variable {var} (secret_env) is not set"), None),
        }
    }
    match request.body(body).send().await {
        Ok(resp) => {
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            outcome_of(resp.status().as_u16(), retry_after.as_deref(), url, now_s)
        }
        Err(e) if e.is_timeout() => Outcome::Retry(format!("{url}: no answer within {} ms", timeout.as_millis()), None),
        Err(e) => Outcome::Retry(format!("{url}: {}", error_chain(&e)), None),
    }
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// The client every webhook shares: no redirects followed (a webhook that
/// moved is a configuration to fix), the User-Agent naming us.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("quota-alerts/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        // Python: hmac.new(b"s3cret", b'1700000000.{"id":"acme#1@0"}', hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"s3cret", 1700000000, "{\"id\":\"acme#1@0\"}"),
            "t=1700000000,v1=4308efa2bc39c198680f9743956e542c0035abf38cc08e84a137ebff9bb229e9"
        );
    }

    #[test]
    fn keys_are_header_safe() {
        assert_eq!(header_safe("user:42#5@17"), "user:42#5@17");
        assert_eq!(header_safe("a b\r\nX: y%#1@2"), "a%20b%0D%0AX:%20y%25#1@2");
        assert_eq!(header_safe("café#1@2"), "caf%C3%A9#1@2");
    }

    #[test]
    fn statuses_decide_retries() {
        assert_eq!(outcome_of(204, None, "u", 0), Outcome::Delivered);
        assert_eq!(
            outcome_of(503, Some("7"), "u", 0),
            Outcome::Retry("u answered 503".into(), Some(Duration::from_secs(7)))
        );
        assert!(matches!(outcome_of(429, None, "u", 0), Outcome::Retry(_, None)));
        assert!(matches!(outcome_of(400, None, "u", 0), Outcome::Permanent(_)));
        assert!(matches!(outcome_of(301, None, "u", 0), Outcome::Permanent(_)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        let date = Some("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            outcome_of(503, date, "u", 784_111_770),
            Outcome::Retry("u answered 503".into(), Some(Duration::from_secs(7)))
        );
        assert_eq!(
            outcome_of(503, date, "u", 784_111_800),
            Outcome::Retry("u answered 503".into(), Some(Duration::ZERO))
        );
        assert!(matches!(outcome_of(503, Some("soon"), "u", 0), Outcome::Retry(_, None)));
        let year = Some(Duration::from_secs(366 * 86_400));
        assert_eq!(
            outcome_of(503, Some("99999999999999999999999"), "u", 0),
            Outcome::Retry("u answered 503".into(), year)
        );
        assert!(matches!(outcome_of(503, Some("Sun, 06 Nov 99999 08:49:37 GMT"), "u", 0), Outcome::Retry(_, None)));
    }
}
