//! One LMTP connection: reads command lines and the message under
//! timeouts and size caps, drives the pure [`Protocol`] and
//! [`DataReader`], hands each message to the intake seam once for all its
//! recipients and answers each recipient with the verdict's reply, only
//! after the store committed. A message is read only with a slot of the
//! server's [`DataBudget`] and within its deadline. Replies to pipelined
//! commands are flushed together, when no more input is waiting. It
//! decides nothing itself.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::budget::{DataBudget, DataSlot};
use super::data::{DataReader, DataStep};
use super::protocol::{LINE_TOO_LONG, Protocol, START_DATA, Step};
use crate::intake::{self, Source, Verdict};

/// The longest command line read (RFC 5321 allows 512 with parameters
/// extended; a margin for long addresses).
const MAX_COMMAND_LINE: usize = 4096;
/// Message lines are read in pieces of at most this size.
const DATA_PIECE: usize = 64 * 1024;
/// How long the client may take to send a command (RFC 5321 §4.5.3.2
/// suggests 5 minutes for the server).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the client may pause within the message.
const DATA_TIMEOUT: Duration = Duration::from_secs(180);
/// The answer to DATA when no slot came free in time (the MTA retries).
const BUSY: &str = "451 4.3.2 Too many messages are being received at once; try again later";
const SHUTTING_DOWN: &str = "421 4.3.2 Shutting down; try again later";
const PAUSED: &str = "421 4.4.2 Timeout; closing";

/// How reading a message ended.
enum Read {
    /// The final dot came: the bytes, or the size read when over the cap.
    Message(Result<Vec<u8>, u64>),
    /// The client went away.
    Gone,
    /// The client paused longer than [`DATA_TIMEOUT`].
    Paused,
    /// The whole message took longer than the budget's deadline.
    Overdue,
}

/// Serves one connection until QUIT, EOF, a timeout or `shutdown`
/// (between commands only: a message being received is finished first).
pub async fn serve<S>(
    stream: S,
    ctx: Arc<Context>,
    budget: Arc<DataBudget>,
    shutdown: CancellationToken,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut protocol = Protocol::new(&ctx.host, ctx.settings.limits.max_message_bytes);
    let mut out = Vec::with_capacity(512);
    send(&mut write, &mut out, &protocol.greeting(), true).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        let read = tokio::select! {
            read = tokio::time::timeout(COMMAND_TIMEOUT, read_piece(&mut reader, MAX_COMMAND_LINE, &mut line)) => read,
            _ = shutdown.cancelled() => {
                return send(&mut write, &mut out, SHUTTING_DOWN, true).await;
            }
        };
        let got = match read {
            Ok(got) => got?,
            Err(_) => return send(&mut write, &mut out, PAUSED, true).await,
        };
        if !got {
            return Ok(()); // the client went away
        }
        if !line.ends_with(b"\n") {
            skip_rest_of_line(&mut reader).await?;
            let flush = reader.buffer().is_empty();
            send(&mut write, &mut out, LINE_TOO_LONG, flush).await?;
            continue;
        }
        let is_queue = |address: &str| ctx.settings.queue_of_address(address).is_some();
        match protocol.command(&line, is_queue) {
            Step::Reply(text) => {
                let flush = reader.buffer().is_empty();
                send(&mut write, &mut out, &text, flush).await?;
            }
            Step::Close(text) => return send(&mut write, &mut out, &text, true).await,
            Step::Data => {
                let io = (&mut reader, &mut write, &mut out);
                if !transaction(io, &mut protocol, &ctx, &budget, &shutdown).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// After DATA: waits for a slot, reads the message under it, stores it
/// and answers each recipient. `false` when the connection is to close.
async fn transaction<R, W>(
    (reader, write, out): (&mut R, &mut W, &mut Vec<u8>),
    protocol: &mut Protocol,
    ctx: &Arc<Context>,
    budget: &Arc<DataBudget>,
    shutdown: &CancellationToken,
) -> io::Result<bool>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let slot = tokio::select! {
        slot = budget.acquire() => slot,
        _ = shutdown.cancelled() => {
            send(write, out, SHUTTING_DOWN, true).await?;
            return Ok(false);
        }
    };
    let Some(mut slot) = slot else {
        tracing::warn!("An LMTP message was refused for now: every DATA slot stayed busy.");
        protocol.end_data();
        send(write, out, BUSY, true).await?;
        return Ok(true);
    };
    send(write, out, START_DATA, true).await?;
    // Lost, paused or overdue mid-message: nothing is stored, the MTA retries.
    let closing = match read_message(reader, ctx, budget, &mut slot).await? {
        Read::Message(message) => {
            let recipients = protocol.end_data();
            let verdict = deliver(ctx, message, &recipients).await;
            drop(slot);
            for _ in &recipients {
                send(write, out, &verdict.lmtp_reply(), false).await?;
            }
            flush_out(write, out).await?;
            return Ok(true);
        }
        Read::Gone => return Ok(false),
        Read::Paused => PAUSED.to_string(),
        Read::Overdue => {
            tracing::warn!("An LMTP message took too long to arrive; the connection is closed.");
            overdue(budget.deadline())
        }
    };
    send(write, out, &closing, true).await?;
    Ok(false)
}

/// The message up to its final dot, each piece within [`DATA_TIMEOUT`]
/// and the whole within the budget's deadline; `slot` counts what it holds.
async fn read_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    ctx: &Context,
    budget: &DataBudget,
    slot: &mut DataSlot,
) -> io::Result<Read> {
    let deadline = tokio::time::Instant::now() + budget.deadline();
    let mut data = DataReader::new(ctx.settings.limits.max_message_bytes);
    let mut piece = Vec::with_capacity(1024);
    loop {
        let read = tokio::time::timeout(DATA_TIMEOUT, read_piece(reader, DATA_PIECE, &mut piece));
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(Ok(true))) => {}
            Ok(Ok(Ok(false))) => return Ok(Read::Gone),
            Ok(Ok(Err(err))) => return Err(err),
            Ok(Err(_)) => return Ok(Read::Paused),
            Err(_) => return Ok(Read::Overdue),
        }
        let step = data.push(&piece);
        slot.hold(data.held());
        if step == DataStep::End {
            return Ok(Read::Message(data.finish()));
        }
    }
}

/// The reply to a message that took longer than `deadline`.
fn overdue(deadline: Duration) -> String {
    let seconds = deadline.as_secs_f64();
    format!("451 4.4.2 The message took longer than {seconds:.0} s to arrive; closing")
}

/// Stores the message once for all `recipients` (or refuses it when it
/// was over the cap); wakes the outbox when it queued mail.
async fn deliver(
    ctx: &Arc<Context>,
    message: Result<Vec<u8>, u64>,
    recipients: &[String],
) -> Verdict {
    let source = Source::lmtp(recipients.to_vec());
    let raw = match message {
        Ok(raw) => raw,
        Err(size) => {
            let limit = ctx.settings.limits.max_message_bytes;
            let verdict = Verdict::RefusedOversize { size, limit };
            verdict.log(&source.describe());
            return verdict;
        }
    };
    let task_ctx = Arc::clone(ctx);
    let stored = tokio::task::spawn_blocking(move || {
        intake::receive(
            &task_ctx.store,
            &task_ctx.pipeline,
            &source,
            raw,
            Utc::now(),
        )
    })
    .await;
    let verdict = stored.unwrap_or_else(|err| Verdict::TemporaryFailure {
        error: format!("the storing task failed: {err}"),
    });
    if verdict.queued() > 0 {
        ctx.outbox_wake.notify_one();
    }
    verdict
}

/// Reads up to and including the next LF, or `max` bytes of a longer
/// line, into `out`. `false` at EOF (a partial last line is dropped: the
/// client went away mid-command).
async fn read_piece<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    out.clear();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(false);
        }
        let room = max - out.len();
        let window = &buf[..buf.len().min(room)];
        if let Some(at) = window.iter().position(|b| *b == b'\n') {
            out.extend_from_slice(&window[..=at]);
            reader.consume(at + 1);
            return Ok(true);
        }
        let taken = window.len();
        out.extend_from_slice(window);
        reader.consume(taken);
        if out.len() >= max {
            return Ok(true);
        }
    }
}

/// Discards the rest of an overlong command line (bounded by the timeout).
async fn skip_rest_of_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<()> {
    let mut scratch = Vec::with_capacity(MAX_COMMAND_LINE);
    loop {
        let read = read_piece(reader, MAX_COMMAND_LINE, &mut scratch);
        match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
            Ok(Ok(true)) if !scratch.ends_with(b"\n") => continue,
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
}

/// Queues one reply; writes out what is queued when `flush` (no more
/// pipelined input is waiting, or the reply must go now).
async fn send<W: AsyncWrite + Unpin>(
    write: &mut W,
    out: &mut Vec<u8>,
    text: &str,
    flush: bool,
) -> io::Result<()> {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
    if flush {
        flush_out(write, out).await?;
    }
    Ok(())
}

async fn flush_out<W: AsyncWrite + Unpin>(write: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    tokio::time::timeout(COMMAND_TIMEOUT, async {
        write.write_all(out).await?;
        write.flush().await
    })
    .await
    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    out.clear();
    Ok(())
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
