//! The system mails of auth collections, each from its collection's template (PocketBase's
//! `mails/record.go`): verification, password reset, email change, one-time password and
//! login alert. The caller issues the tokens; these only render.

use serde_json::Value;

use super::message::{AppMeta, Message, render};
use crate::store::Collection;
use crate::store::records::Record;

fn email_of(rec: &Record) -> &str {
    rec.get("email").and_then(Value::as_str).unwrap_or_default()
}

fn options(c: &Collection) -> crate::store::schema::AuthOptions {
    c.auth.clone().unwrap_or_default()
}

/// "Verify your email", with a verification token.
pub fn verification(meta: &AppMeta, c: &Collection, rec: &Record, token: &str) -> Message {
    let t = options(c).verification_template;
    let (subject, html) = render(&t, meta, c, rec, &[("{TOKEN}", token)]);
    Message::system(email_of(rec), subject, html)
}

/// "Reset your password", with a password-reset token.
pub fn password_reset(meta: &AppMeta, c: &Collection, rec: &Record, token: &str) -> Message {
    let t = options(c).reset_password_template;
    let (subject, html) = render(&t, meta, c, rec, &[("{TOKEN}", token)]);
    Message::system(email_of(rec), subject, html)
}

/// "Confirm your new email address", sent to the new address.
pub fn email_change(
    meta: &AppMeta,
    c: &Collection,
    rec: &Record,
    new_email: &str,
    token: &str,
) -> Message {
    let t = options(c).confirm_email_change_template;
    let (subject, html) = render(&t, meta, c, rec, &[("{TOKEN}", token)]);
    Message::system(new_email, subject, html)
}

/// The one-time password and its id.
pub fn otp(meta: &AppMeta, c: &Collection, rec: &Record, otp_id: &str, password: &str) -> Message {
    let t = options(c).otp.email_template;
    let (subject, html) = render(
        &t,
        meta,
        c,
        rec,
        &[("{OTP_ID}", otp_id), ("{OTP}", password)],
    );
    Message::system(email_of(rec), subject, html)
}

/// "Login from a new location", with a description of the login.
pub fn auth_alert(meta: &AppMeta, c: &Collection, rec: &Record, info: &str) -> Message {
    let t = options(c).auth_alert.email_template;
    let info = super::message::escape_html(info);
    let (subject, html) = render(&t, meta, c, rec, &[("{ALERT_INFO}", &info)]);
    Message::system(email_of(rec), subject, html)
}
