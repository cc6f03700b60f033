//! Delivery of one [`Message`] with the node's settings, as PocketBase's mailer does it: SMTP
//! when `smtp.enabled` (implicit TLS when `smtp.tls`, otherwise STARTTLS whenever the server
//! offers it; AUTH PLAIN, or LOGIN when `smtp.authMethod` says so, only with a username or
//! password), else the system's `sendmail`. The body is multipart/alternative: the plain text
//! and the HTML.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSendmailTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::Value;

use super::{Address, MailError, Message};

/// How long one SMTP conversation may take before it counts as a failed attempt.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

fn mailbox(a: &Address) -> Result<Mailbox, MailError> {
    let addr = a
        .address
        .parse()
        .map_err(|_| MailError::Address(a.address.clone()))?;
    let name = (!a.name.is_empty()).then(|| a.name.clone());
    Ok(Mailbox::new(name, addr))
}

fn text(settings: &Value, pointer: &str) -> String {
    settings
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The message as lettre builds it, with the settings' sender unless the message names one.
fn build(settings: &Value, msg: &Message) -> Result<lettre::Message, MailError> {
    let from = msg.from.clone().unwrap_or_else(|| Address {
        name: text(settings, "/meta/senderName"),
        address: text(settings, "/meta/senderAddress"),
    });
    let mut b = lettre::Message::builder()
        .from(mailbox(&from)?)
        .subject(msg.subject.clone());
    for to in &msg.to {
        b = b.to(mailbox(to)?);
    }
    b.multipart(MultiPart::alternative_plain_html(
        msg.text.clone(),
        msg.html.clone(),
    ))
    .map_err(|e| MailError::Build(e.to_string()))
}

/// Sends `msg` once; any failure is the caller's to retry.
pub async fn send(settings: &Value, msg: &Message) -> Result<(), MailError> {
    let email = build(settings, msg)?;
    let smtp = settings.get("smtp").cloned().unwrap_or(Value::Null);
    if !smtp
        .get("enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return AsyncSendmailTransport::<Tokio1Executor>::new()
            .send(email)
            .await
            .map_err(|e| MailError::Transport(format!("sendmail: {e}")));
    }
    let host = text(&smtp, "/host");
    let port = smtp.get("port").and_then(Value::as_u64).unwrap_or(587);
    let port = u16::try_from(port).map_err(|_| MailError::Transport("invalid smtp.port".into()))?;
    let params =
        TlsParameters::new(host.clone()).map_err(|e| MailError::Transport(e.to_string()))?;
    let tls = if smtp.get("tls").and_then(Value::as_bool).unwrap_or(false) {
        Tls::Wrapper(params)
    } else {
        Tls::Opportunistic(params)
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    let local_name = text(&smtp, "/localName");
    builder = builder.hello_name(ClientId::Domain(if local_name.is_empty() {
        "localhost".into()
    } else {
        local_name
    }));
    let (user, pass) = (text(&smtp, "/username"), text(&smtp, "/password"));
    if !user.is_empty() || !pass.is_empty() {
        let mechanism = if text(&smtp, "/authMethod") == "LOGIN" {
            Mechanism::Login
        } else {
            Mechanism::Plain
        };
        builder = builder
            .credentials(Credentials::new(user, pass))
            .authentication(vec![mechanism]);
    }
    builder
        .build()
        .send(email)
        .await
        .map(|_| ())
        .map_err(|e| MailError::Transport(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_sender_comes_from_the_settings() {
        let settings =
            json!({"meta": {"senderName": "Support", "senderAddress": "support@example.com"}});
        let msg = Message::system("ann@example.com", "Hi".into(), "<p>Hello</p>".into());
        let built = build(&settings, &msg).expect("build");
        let raw = String::from_utf8(built.formatted()).expect("utf8");
        assert!(raw.contains("From: Support <support@example.com>"), "{raw}");
        assert!(raw.contains("To: ann@example.com"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        let bad = json!({"meta": {"senderAddress": "not an address"}});
        assert!(matches!(build(&bad, &msg), Err(MailError::Address(_))));
    }
}
