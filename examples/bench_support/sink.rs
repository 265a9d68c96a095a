//! A discarding SMTP server on loopback: it plays the operator's relay for
//! the ingest benchmark, so that confirmations and notifications go through
//! a full SMTP transaction (EHLO, MAIL, RCPT, DATA) without the stack's
//! Postfix and Dovecot delivering 10,000s of mails on the same two cores.
//! It counts the messages it accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A running sink.
pub struct Sink {
    pub port: u16,
    accepted: Arc<AtomicU64>,
}

impl Sink {
    /// Listens on 127.0.0.1 (a free port) until the runtime ends.
    pub async fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let _ = serve(stream, &count).await;
                });
            }
        });
        Ok(Sink { port, accepted })
    }

    /// Messages accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn serve(stream: TcpStream, accepted: &AtomicU64) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb = line
            .split(|b| *b == b' ' || *b == b'\r')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n",
            b"HELO" | b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 OK\r\n",
            b"QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            b"DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                accepted.fetch_add(1, Ordering::Relaxed);
                b"250 OK queued\r\n"
            }
            _ => b"502 not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// One outgoing mail as the daemon queued it.
pub struct Outgoing {
    pub from: String,
    pub to: Vec<String>,
    pub raw: Vec<u8>,
}

/// The sending floor: the least an SMTP client does to hand `mails` to the
/// sink at `port`, one connection with TCP_NODELAY, each mail its own
/// transaction (MAIL, RCPT for each recipient, DATA, the dot-stuffed
/// body), every reply awaited as lettre does (no pipelining), and nothing
/// else: no database, no journal. Returns how long it took.
pub async fn send_floor(port: u16, mails: &[Outgoing]) -> anyhow::Result<std::time::Duration> {
    let started = std::time::Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let mut reply = async |read: &mut BufReader<_>, code: &[u8]| -> anyhow::Result<()> {
        loop {
            line.clear();
            if read.read_until(b'\n', &mut line).await? == 0 {
                anyhow::bail!("the sink closed the connection");
            }
            if !line.starts_with(code) {
                anyhow::bail!("the sink answered {}", String::from_utf8_lossy(&line));
            }
            if line.get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    reply(&mut read, b"220").await?;
    write.write_all(b"EHLO floor.test\r\n").await?;
    reply(&mut read, b"250").await?;
    let mut body = Vec::new();
    for mail in mails {
        write
            .write_all(format!("MAIL FROM:<{}>\r\n", mail.from).as_bytes())
            .await?;
        reply(&mut read, b"250").await?;
        for to in &mail.to {
            write
                .write_all(format!("RCPT TO:<{to}>\r\n").as_bytes())
                .await?;
            reply(&mut read, b"250").await?;
        }
        write.write_all(b"DATA\r\n").await?;
        reply(&mut read, b"354").await?;
        body.clear();
        for piece in mail.raw.split_inclusive(|b| *b == b'\n') {
            if piece.starts_with(b".") {
                body.push(b'.');
            }
            body.extend_from_slice(piece);
        }
        if !body.ends_with(b"\r\n") {
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b".\r\n");
        write.write_all(&body).await?;
        reply(&mut read, b"250").await?;
    }
    write.write_all(b"QUIT\r\n").await?;
    Ok(started.elapsed())
}
