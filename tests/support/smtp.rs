//! A local SMTP server for tests: speaks enough SMTP (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT;
//! no STARTTLS, no AUTH) for a real client to deliver to it, and keeps every mail it accepted.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One delivered mail: the envelope and the raw message.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Mail {
    /// The message with quoted-printable soft breaks and escapes undone and base64 parts
    /// decoded, so links in it can be searched.
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "").replace("=\n", "");
        let mut out = String::with_capacity(joined.len());
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
            {
                out.push(b as char);
                i += 3;
                continue;
            }
            out.push(bytes[i] as char);
            i += 1;
        }
        // Base64 bodies: decode every long base64-looking line block too.
        use base64::Engine;
        let mut extra = String::new();
        for block in out.split("\r\n\r\n") {
            let compact: String = block.split_whitespace().collect();
            if compact.len() > 40
                && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(&compact)
                && let Ok(text) = String::from_utf8(raw)
            {
                extra.push_str(&text);
            }
        }
        out + &extra
    }

    /// The token in a `/_/#/auth/<action>/<token>` link of the mail.
    pub fn token(&self, action: &str) -> Option<String> {
        let text = self.decoded();
        let marker = format!("/auth/{action}/");
        let start = text.find(&marker)? + marker.len();
        Some(
            text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect(),
        )
    }
}

/// A running sink; stops when dropped.
pub struct Sink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Listens on `port` (0: any free port) on 127.0.0.1.
    pub async fn start(port: u16) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind smtp sink");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let kept = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = session(stream, kept).await;
                });
            }
        });
        Sink { port, mails, task }
    }

    /// Every mail so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("lock").clone()
    }

    /// Mails with `to` among their recipients.
    pub fn to(&self, to: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect()
    }

    /// Waits (up to `secs`) for the `n`th mail to `to` and returns it.
    pub async fn wait_for(&self, to: &str, n: usize, secs: u64) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.to(to);
            if got.len() >= n {
                return got[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail #{n} to {to} within {secs} s (have {} mails in all)",
                self.mails().len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(stream: TcpStream, mails: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 ok\r\n"
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            b"250 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&line);
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&line));
            b"250 ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mails.lock().expect("lock").push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end].trim().to_string()
}
