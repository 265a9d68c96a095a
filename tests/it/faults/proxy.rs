//! A TCP proxy in front of the real Dovecot that breaks an IMAP connection
//! when the daemon sends a given command: cut it (both sides closed) part
//! way into the answer, or before the command even reaches the server, or
//! freeze it (the socket stays open, the server's bytes stop coming).
//! Everything else is passed through untouched, so the daemon still talks
//! to a real server; only the fault is injected.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close both sides after this many bytes of the answer.
    Cut { after: usize },
    /// Close both sides without passing the command on.
    Swallow,
    /// Pass this many bytes of the answer, then nothing more.
    Freeze { after: usize },
}

#[derive(Default)]
struct Shared {
    /// Faults still to inject, in order, each with the command text
    /// (e.g. `UID FETCH`) that triggers it.
    armed: Mutex<VecDeque<(&'static str, Fault)>>,
    connections: AtomicUsize,
    faults_done: AtomicUsize,
}

pub struct ImapProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ImapProxy {
    pub async fn start(upstream: SocketAddr) -> ImapProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let shared = Arc::new(Shared::default());
        let accepting = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepting.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(client, upstream, Arc::clone(&accepting)));
            }
        });
        ImapProxy { addr, shared }
    }

    /// Queues `fault` for the next command containing `trigger` (once).
    pub fn arm(&self, trigger: &'static str, fault: Fault) {
        self.shared
            .armed
            .lock()
            .unwrap()
            .push_back((trigger, fault));
    }

    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many faults were injected so far.
    pub fn faults_done(&self) -> usize {
        self.shared.faults_done.load(Ordering::SeqCst)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The first armed fault, if `command` carries its trigger.
fn claim(shared: &Shared, command: &[u8]) -> Option<Fault> {
    let mut armed = shared.armed.lock().unwrap();
    let (trigger, _) = armed.front()?;
    if !contains(command, trigger.as_bytes()) {
        return None;
    }
    armed.pop_front().map(|(_, fault)| fault)
}

/// One client connection: both directions pumped until either side ends
/// or the fault says otherwise.
async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // This connection's fault, claimed when its FETCH goes by.
    let mine: Mutex<Option<Fault>> = Mutex::new(None);
    let upward = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if let Some(fault) = claim(&shared, &buf[..n]) {
                if fault == Fault::Swallow {
                    shared.faults_done.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                *mine.lock().unwrap() = Some(fault);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downward = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut passed = 0usize;
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let fault = *mine.lock().unwrap();
            let Some(fault) = fault else {
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                continue;
            };
            let after = match fault {
                Fault::Cut { after } | Fault::Freeze { after } => after,
                Fault::Swallow => 0,
            };
            let room = after.saturating_sub(passed).min(n);
            if client_write.write_all(&buf[..room]).await.is_err() {
                return;
            }
            passed += room;
            if passed < after {
                continue;
            }
            shared.faults_done.fetch_add(1, Ordering::SeqCst);
            match fault {
                // Returning drops every half: both TCP connections close.
                Fault::Cut { .. } | Fault::Swallow => return,
                // Hold the connection open and silent until the client leaves.
                Fault::Freeze { .. } => std::future::pending::<()>().await,
            }
        }
    };
    tokio::select! {
        _ = upward => {}
        _ = downward => {}
    }
}
