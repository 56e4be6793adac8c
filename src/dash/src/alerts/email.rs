//! Email: one plain-text mail per event and destination, saying where
//! (tree, path, policy), how much (used of limit) and what to do. The text
//! is built here from the event alone (pure, tested); `send` hands it to the
//! SMTP server.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls as SmtpTls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rust_decimal::Decimal;
use serde_json::Value as Json;

use super::config::{Encryption, Smtp};
use super::store::Job;
use super::webhook::Outcome;

/// A field of the event as text ("" when absent or null).
fn field(ev: &Json, k: &str) -> String {
    match ev.get(k) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// `used` as a percentage of `limit`, whole, when both are numbers and
/// the limit is above 0.
fn percent(used: &str, limit: &str) -> Option<Decimal> {
    let (u, l) = (used.parse::<Decimal>().ok()?, limit.parse::<Decimal>().ok()?);
    if l <= Decimal::ZERO {
        return None;
    }
    Some((u * Decimal::from(100) / l).round_dp(0))
}

/// Unix ms as `2026-02-01 00:00:00 UTC`.
fn when(ms: &str) -> String {
    ms.parse::<u64>().map(crate::web::fmt_ms).unwrap_or_default()
}

/// The subject and the body of the mail for `job`.
pub fn text(job: &Job) -> (String, String) {
    let ev = &job.event;
    let f = |k: &str| field(ev, k);
    let (path, policy, metric) = (f("path"), f("policy"), f("metric"));
    let (used, held, limit) = (f("used"), f("held"), f("limit"));
    let unit = if metric.is_empty() { String::new() } else { format!(" {metric}") };
    let pct = percent(&used, &limit).map(|p| format!(" ({p} %)")).unwrap_or_default();
    let usage = if limit.is_empty() { String::new() } else { format!("{used} of {limit}{unit}{pct}") };
    let (headline, happened, todo) = match job.kind() {
        "warning" => (
            format!("{policy} is at {} % of its limit", f("threshold")),
            format!("Usage crossed the {} % warning threshold: {usage} used.", f("threshold")),
            "Requests are refused once the limit is reached. If this usage is expected, raise the limit \
             (QUOTA.SET) or add credits (QUOTA.GRANT) before then; otherwise find out who is using it."
                .to_string(),
        ),
        "over" => (
            format!("{policy} has reached its limit"),
            format!("The limit is reached: {usage} used."),
            "Requests that need more are refused until the period resets. Raise the limit (QUOTA.SET) or add \
             credits (QUOTA.GRANT) to let them through now."
                .to_string(),
        ),
        "low" => (
            format!("{policy} is low: {} left", f("remaining")),
            format!("Only {}{unit} remain, at or below the low mark of {}.", f("remaining"), f("low")),
            "Top it up (QUOTA.GRANT, or your billing system's top-up) before it runs out and requests are refused."
                .to_string(),
        ),
        "grant_expired" => (
            format!("a grant on {policy} expired"),
            format!(
                "Grant {} reached its expiry with {}{unit} unused; the allowance is now {limit}{unit}.",
                f("grant"),
                f("amount")
            ),
            "Nothing to do if that was planned. To keep the credits available, grant them again with a later \
             expiry (QUOTA.GRANT)."
                .to_string(),
        ),
        "expired" => (
            format!("reservation {} expired", f("id")),
            format!("Reservation {} expired before it was committed or released; what it held is free again.", f("id")),
            "Nothing was charged. Check the caller that reserved it: it probably crashed or timed out before \
             QUOTA.COMMIT or QUOTA.RELEASE."
                .to_string(),
        ),
        "reset" => (
            format!("{policy}'s period closed"),
            format!(
                "A period closed with {usage} used{}.",
                match f("periods").as_str() {
                    "" | "1" => String::new(),
                    n => format!(" ({n} periods closed at once)"),
                }
            ),
            "Nothing to do: usage starts again from zero. QUOTA.HISTORY shows the closed periods.".to_string(),
        ),
        "rollover" => (
            format!("{policy} carried {} over", f("rolled_over")),
            format!("The new period starts with {}{unit} carried over from the last.", f("rolled_over")),
            "Nothing to do.".to_string(),
        ),
        "disallowed" => (
            format!("a charge the access rules refuse was recorded at {path}"),
            format!(
                "A QUOTA.CHARGE for {}{} was recorded although the {} rule at {path} refuses it.",
                f("service"),
                if f("model").is_empty() { String::new() } else { format!("/{}", f("model")) },
                f("rule")
            ),
            "Find the caller that charged without CHECK, and either add CHECK to its charges or change the \
             access rules (QUOTA.ALLOW, QUOTA.DENY)."
                .to_string(),
        ),
        other => (format!("{other} event"), format!("A {other} event fired."), "See the event below.".to_string()),
    };
    let subject = one_line(&format!("[quota] {} {}: {headline}", job.tree, path));
    let mut body = String::new();
    body.push_str(&format!("{happened}\n\n"));
    let mut row = |name: &str, value: String| {
        if !value.is_empty() {
            body.push_str(&format!("{name:<9}{value}\n"));
        }
    };
    row("Tree:", one_line(&job.tree));
    row("Path:", one_line(&path));
    row(
        "Policy:",
        if policy.is_empty() {
            String::new()
        } else {
            format!("{policy}{}", if metric.is_empty() { String::new() } else { format!(" ({metric})") })
        },
    );
    row("Used:", usage);
    row("Held:", if held.is_empty() || held == "0" { String::new() } else { format!("{held}{unit}") });
    row("Event:", format!("{} (seq {}) at {}", job.kind(), job.seq, when(&f("time"))));
    body.push_str(&format!("\nWhat to do: {todo}\n"));
    body.push_str(&format!(
        "\n-- \nSent by quota-dash alerts for rule {} to {}.\nEvent id {} (the same id if this mail is ever sent again).\n",
        job.rules.join(", "),
        job.dest,
        one_line(&job.key)
    ));
    (subject, body)
}

/// Control characters (a tree name may hold any byte) become spaces, so a
/// name cannot add lines to the mail; at most 200 characters, then `…`.
fn one_line(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    if s.chars().nth(200).is_some() {
        out.push('…');
    }
    out
}

/// The Message-ID: the idempotency key with everything but letters,
/// digits and `.-_` written as `=XX`, so a mail sent twice carries the same id.
pub fn message_id(key: &str) -> String {
    let mut out = String::from("<");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out.push_str("@quota-alerts>");
    out
}

/// One attempt: sends the mail for `job` to `to` through `smtp`.
pub async fn send(smtp: &Smtp, to: &[String], job: &Job, timeout: Duration) -> Outcome {
    let (subject, body) = text(job);
    let mut builder = Message::builder().subject(subject).message_id(Some(message_id(&job.key)));
    match smtp.from.parse::<Mailbox>() {
        Ok(m) => builder = builder.from(m),
        Err(e) => return Outcome::Permanent(format!("smtp.from {}: {e}", smtp.from)),
    }
    for a in to {
        match a.parse::<Mailbox>() {
            Ok(m) => builder = builder.to(m),
            Err(e) => return Outcome::Permanent(format!("address {a}: {e}")),
        }
    }
    let message = match builder.header(ContentType::TEXT_PLAIN).body(body) {
        Ok(m) => m,
        Err(e) => return Outcome::Permanent(format!("cannot build the mail: {e}")),
    };
    let tls = match smtp.tls {
        Encryption::Plain => SmtpTls::None,
        Encryption::StartTls | Encryption::Implicit => match TlsParameters::new(smtp.host.clone()) {
            Ok(p) if smtp.tls == Encryption::Implicit => SmtpTls::Wrapper(p),
            Ok(p) => SmtpTls::Required(p),
            Err(e) => return Outcome::Retry(format!("TLS for {}: {e}", smtp.host), None),
        },
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(var)) = (&smtp.username, &smtp.password_env) {
        match std::env::var(var) {
            Ok(pw) => transport = transport.credentials(Credentials::new(user.clone(), pw)),
            Err(_) => {
                return Outcome::Retry(format!("the environment variable {var} (smtp.password_env) is not set"), None);
            }
        }
    }
    match transport.build().send(message).await {
        Ok(_) => Outcome::Delivered,
        Err(e) if e.is_permanent() => Outcome::Permanent(format!("SMTP {}:{}: {e}", smtp.host, smtp.port)),
        Err(e) => Outcome::Retry(format!("SMTP {}:{}: {e}", smtp.host, smtp.port), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ev: Json) -> Job {
        let tree = ev["tree"].as_str().unwrap_or("acme").to_string();
        Job::new(&tree, ev, "ops", vec!["at-80".to_string()], 0)
    }

    #[test]
    fn a_warning_says_where_how_much_and_what_to_do() {
        let j = job(json!({"seq": 5, "type": "warning", "time": 1769904000000u64, "tree": "acme", "path": "/team-a",
            "policy": "monthly", "metric": "credits", "used": "85", "held": "2", "limit": "100", "threshold": 80}));
        let (subject, body) = text(&j);
        assert_eq!(subject, "[quota] acme /team-a: monthly is at 80 % of its limit");
        for want in [
            "Usage crossed the 80 % warning threshold: 85 of 100 credits (85 %) used.",
            "Tree:    acme\n",
            "Path:    /team-a\n",
            "Policy:  monthly (credits)\n",
            "Used:    85 of 100 credits (85 %)\n",
            "Held:    2 credits\n",
            "Event:   warning (seq 5) at 2026-02-01 00:00:00 UTC\n",
            "What to do: Requests are refused once the limit is reached.",
            "Event id acme#5@1769904000000",
        ] {
            assert!(body.contains(want), "{want:?} not in\n{body}");
        }
    }

    #[test]
    fn every_type_has_a_headline_and_advice() {
        for kind in super::super::config::EVENT_TYPES {
            let (subject, body) = text(&job(json!({"seq": 1, "type": kind, "time": 0, "path": "/", "policy": "p",
                "used": "1", "limit": "0", "remaining": "3", "low": "5", "id": "r1", "rule": "deny", "service": "s"})));
            assert!(subject.starts_with("[quota] acme /: "), "{subject}");
            assert!(body.contains("What to do: ") && !body.contains("{"), "{kind}: {body}");
        }
    }

    #[test]
    fn subjects_are_one_line_and_ids_are_safe() {
        let (subject, _) = text(&job(json!({"seq": 1, "type": "over", "tree": "a\r\nBcc: x@y", "path": "/"})));
        assert!(!subject.contains(['\r', '\n']));
        let (_, body) = text(&job(json!({"seq": 1, "type": "over", "tree": "a\r\nWhat to do: pay", "path": "/"})));
        assert!(body.contains("Tree:    a  What to do: pay\n"), "{body}");
        assert_eq!(message_id("user:42#5@17"), "<user=3A42=235=4017@quota-alerts>");
    }
}
