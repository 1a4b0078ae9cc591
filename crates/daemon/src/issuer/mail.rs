//! Invitation mail (DESIGN §7.5): with SMTP configured, `hephd user invite`
//! mails the single-use link instead of printing it.
//!
//! The server is one URL, `smtp_url`, read from the environment
//! (`HEPH_SMTP_URL`) or the config file — never a flag, since it may hold
//! a password: `smtps://user:pass@mail.example` (TLS from the start),
//! `smtp://user:pass@mail.example:587?tls=required` (STARTTLS), or plain
//! `smtp://127.0.0.1:25` for a relay on this machine only. The sender is
//! `smtp_from`. Sending uses lettre over rustls (aws-lc-rs) with the
//! platform's certificate verifier. Nothing here logs the URL's password.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::{Message, SmtpTransport, Transport};

/// Where invitation mail goes out.
#[derive(Clone, PartialEq, Eq)]
pub struct MailSettings {
    pub url: String,
    pub from: String,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("server", &redact(&self.url))
            .field("from", &self.from)
            .finish()
    }
}

/// The SMTP URL with any password replaced, for messages and `--print-config`.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "[an SMTP URL that does not parse]".into(),
    }
}

/// Why a mail could not be sent; one sentence, no password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MailError(pub String);

/// Checks the settings before anything is sent.
pub fn check(settings: &MailSettings) -> Result<(), MailError> {
    let url = reqwest::Url::parse(&settings.url).map_err(|e| {
        MailError(format!(
            "smtp_url is not a URL ({e}); write it like smtps://user:password@mail.example"
        ))
    })?;
    let host = url.host_str().unwrap_or_default();
    let tls = url
        .query_pairs()
        .any(|(k, v)| k == "tls" && (v == "required" || v == "opportunistic"));
    let loopback = heph_core::net::is_loopback_host(host);
    match url.scheme() {
        "smtps" => {}
        "smtp" if tls || loopback => {}
        "smtp" => {
            return Err(MailError(format!(
                "smtp_url sends mail to {host} without TLS, so the invitation link and the SMTP password would travel in clear; use smtps://{host} or add ?tls=required"
            )));
        }
        other => {
            return Err(MailError(format!(
                "smtp_url has the scheme {other}:, not smtps: or smtp:"
            )));
        }
    }
    settings
        .from
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| {
            MailError(format!(
                "smtp_from {:?} is not a mail address ({e}); e.g. Heph <hub@example.org>",
                settings.from
            ))
        })?;
    Ok(())
}

/// Mails `link` to `to`, inviting them to the hub at `hub`.
pub fn send_invite(
    settings: &MailSettings,
    to: &str,
    hub: &str,
    link: &str,
) -> Result<(), MailError> {
    check(settings)?;
    let to_box = to.parse::<lettre::message::Mailbox>().map_err(|e| {
        MailError(format!(
            "{to:?} is not a mail address ({e}), so the invitation cannot be mailed"
        ))
    })?;
    let from = settings
        .from
        .parse::<lettre::message::Mailbox>()
        .map_err(|e| MailError(format!("smtp_from is not a mail address: {e}")))?;
    let body = format!(
        "You are invited to a Hephaestus hub at {hub}.\n\n\
Open this link within 15 minutes to choose your password (it works once):\n\n  {link}\n\n\
Then, on each of your devices, run:\n\n  heph auth login --hub-url {hub}\n\n\
If you did not expect this, ignore it: the link expires by itself.\n"
    );
    let message = Message::builder()
        .from(from)
        .to(to_box)
        .subject("Your invitation to a Hephaestus hub")
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| MailError(format!("cannot build the invitation mail: {e}")))?;
    let server = redact(&settings.url);
    let mailer = SmtpTransport::from_url(&settings.url)
        .map_err(|e| MailError(format!("cannot use the SMTP server {server}: {e}")))?
        .timeout(Some(Duration::from_secs(20)))
        .build();
    mailer.send(&message).map_err(|e| {
        MailError(format!(
            "the SMTP server {server} did not take the mail: {e}"
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    fn settings(url: &str) -> MailSettings {
        MailSettings {
            url: url.into(),
            from: "Heph <hub@example.org>".into(),
        }
    }

    #[test]
    fn passwords_are_redacted_and_clear_text_to_other_hosts_refused() {
        assert_eq!(
            redact("smtps://me:s3cret@mail.example.org"),
            "smtps://me:%5Bredacted%5D@mail.example.org"
        );
        assert!(!format!("{:?}", settings("smtps://me:s3cret@mail.example")).contains("s3cret"));
        assert!(check(&settings("smtps://me:pw@mail.example")).is_ok());
        assert!(check(&settings("smtp://me:pw@mail.example:587?tls=required")).is_ok());
        assert!(check(&settings("smtp://127.0.0.1:2525")).is_ok());
        let e = check(&settings("smtp://me:pw@mail.example")).unwrap_err();
        assert!(e.0.contains("without TLS") && !e.0.contains("pw@"), "{e}");
        assert!(check(&settings("http://mail.example")).is_err());
        let mut bad_from = settings("smtps://mail.example");
        bad_from.from = "not an address".into();
        assert!(check(&bad_from).is_err());
    }

    /// A minimal SMTP server on loopback that records one message.
    fn fake_smtp() -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream);
            let mut said = String::new();
            writeln!(out, "220 fake ESMTP\r").unwrap();
            let mut in_data = false;
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                said.push_str(&line);
                let cmd = line.trim_end().to_ascii_uppercase();
                line.clear();
                if in_data {
                    if cmd == "." {
                        in_data = false;
                        writeln!(out, "250 queued\r").unwrap();
                    }
                    continue;
                }
                let reply = if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    "250 fake"
                } else if cmd == "DATA" {
                    in_data = true;
                    "354 go on"
                } else if cmd == "QUIT" {
                    writeln!(out, "221 bye\r").unwrap();
                    break;
                } else {
                    "250 ok"
                };
                writeln!(out, "{reply}\r").unwrap();
            }
            said
        });
        (port, handle)
    }

    #[test]
    fn an_invitation_is_mailed_with_the_link() {
        let (port, server) = fake_smtp();
        send_invite(
            &settings(&format!("smtp://127.0.0.1:{port}")),
            "bob@example.org",
            "https://hub.example",
            "https://hub.example/invite?token=abc",
        )
        .unwrap();
        let said = server.join().unwrap();
        assert!(said.contains("RCPT TO:<bob@example.org>"), "{said}");
        assert!(
            said.contains("https://hub.example/invite?token=abc"),
            "{said}"
        );
        assert!(said.contains("heph auth login --hub-url https://hub.example"));
    }

    #[test]
    fn a_server_that_is_not_there_is_a_clear_error() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = send_invite(
            &settings(&format!("smtp://127.0.0.1:{port}")),
            "bob@example.org",
            "https://hub.example",
            "link",
        )
        .unwrap_err();
        assert!(e.0.contains("did not take the mail"), "{e}");
    }
}
