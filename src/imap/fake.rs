//! A scripted in-process IMAP server for the unit tests, on 127.0.0.1 port
//! 0. It speaks just enough IMAP4rev1 for the watch loop (LOGIN, SELECT,
//! UID SEARCH/FETCH (whole, RFC822.SIZE, partial header)/STORE/MOVE/COPY/
//! EXPUNGE, CREATE, IDLE, LOGOUT) and can
//! show faults a real server cannot be made to show on demand: a server that
//! accepts and never answers. It must not be used outside tests; the real
//! behaviour is checked against Dovecot in the integration tests.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Message {
    pub raw: Vec<u8>,
    pub flags: BTreeSet<String>,
}

#[derive(Debug)]
pub struct State {
    pub uidvalidity: u32,
    pub next_uid: u32,
    pub messages: BTreeMap<u32, Message>,
    /// Other folders: name → raw messages moved or copied there.
    pub folders: BTreeMap<String, Vec<Vec<u8>>>,
    /// Capabilities beyond IMAP4rev1, e.g. `IDLE`, `MOVE`, `UIDPLUS`.
    pub caps: Vec<&'static str>,
    /// Accept connections but never send a byte.
    pub hang: bool,
    /// Answer every IDLE at once with this untagged `NO` (as Dovecot did
    /// for a mailbox deleted under the session).
    pub idle_complaint: Option<String>,
    pub connections: usize,
}

/// The server plus a shared event log (commands received, and whatever the
/// tests' sink appends), so tests can check the order of things.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    pub events: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
}

pub fn raw_mail(n: u32) -> Vec<u8> {
    format!("Message-ID: <m{n}@test>\r\nSubject: mail {n}\r\n\r\nBody {n}\r\n").into_bytes()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeServer {
    pub async fn start(uidvalidity: u32, uids: &[u32], caps: &[&'static str]) -> FakeServer {
        let messages = uids
            .iter()
            .map(|&uid| {
                let msg = Message {
                    raw: raw_mail(uid),
                    flags: BTreeSet::new(),
                };
                (uid, msg)
            })
            .collect();
        let state = Arc::new(Mutex::new(State {
            uidvalidity,
            next_uid: uids.iter().max().copied().unwrap_or(0) + 1,
            messages,
            folders: BTreeMap::new(),
            caps: caps.to_vec(),
            hang: false,
            idle_complaint: None,
            connections: 0,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = FakeServer {
            addr,
            state: state.clone(),
            events: Arc::new(Mutex::new(Vec::new())),
            arrived: Arc::new(Notify::new()),
        };
        let (events, arrived) = (server.events.clone(), server.arrived.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let conn = Conn {
                    state: state.clone(),
                    events: events.clone(),
                    arrived: arrived.clone(),
                };
                tokio::spawn(conn.serve(socket));
            }
        });
        server
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn flag(&self, uid: u32, flag: &str) {
        if let Some(m) = self.state().messages.get_mut(&uid) {
            m.flags.insert(flag.to_string());
        }
    }

    pub fn has_flag(&self, uid: u32, flag: &str) -> bool {
        self.state()
            .messages
            .get(&uid)
            .is_some_and(|m| m.flags.contains(flag))
    }

    pub fn events(&self) -> Vec<String> {
        lock(&self.events).clone()
    }

    /// Replaces the bytes of message `uid`.
    pub fn set_raw(&self, uid: u32, raw: Vec<u8>) {
        if let Some(m) = self.state().messages.get_mut(&uid) {
            m.raw = raw;
        }
    }

    /// Delivers a new message and wakes any IDLE session.
    pub fn deliver(&self) -> u32 {
        let uid = {
            let mut st = self.state();
            let uid = st.next_uid;
            st.next_uid += 1;
            let msg = Message {
                raw: raw_mail(uid),
                flags: BTreeSet::new(),
            };
            st.messages.insert(uid, msg);
            uid
        };
        self.arrived.notify_waiters();
        uid
    }
}

struct Conn {
    state: Arc<Mutex<State>>,
    events: Arc<Mutex<Vec<String>>>,
    arrived: Arc<Notify>,
}

impl Conn {
    async fn serve(self, socket: TcpStream) {
        let hang = {
            let mut st = lock(&self.state);
            st.connections += 1;
            st.hang
        };
        let (read, mut write) = socket.into_split();
        let mut reader = BufReader::new(read);
        if hang {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
            return;
        }
        let _ = write.write_all(b"* OK fake IMAP ready\r\n").await;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = line.trim_end().to_string();
            let (tag, command) = text.split_once(' ').unwrap_or((text.as_str(), ""));
            let shown = if command.to_ascii_uppercase().starts_with("LOGIN") {
                "LOGIN ***".to_string()
            } else {
                command.to_string()
            };
            lock(&self.events).push(shown);
            let upper = command.to_ascii_uppercase();
            let reply = if upper == "IDLE" {
                self.idle(tag, &mut reader, &mut write).await
            } else {
                let reply = self.answer(tag, command, &upper);
                if upper == "LOGOUT" {
                    let _ = write.write_all(reply.as_bytes()).await;
                    return;
                }
                Some(reply)
            };
            let Some(reply) = reply else { return };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    async fn idle(
        &self,
        tag: &str,
        reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
        write: &mut tokio::net::tcp::OwnedWriteHalf,
    ) -> Option<String> {
        write.write_all(b"+ idling\r\n").await.ok()?;
        let complaint = lock(&self.state).idle_complaint.clone();
        if let Some(complaint) = complaint {
            write
                .write_all(format!("* NO {complaint}\r\n").as_bytes())
                .await
                .ok()?;
        }
        let mut line = String::new();
        loop {
            let arrived = self.arrived.notified();
            tokio::select! {
                read = reader.read_line(&mut line) => {
                    if matches!(read, Ok(0) | Err(_)) {
                        return None;
                    }
                    lock(&self.events).push(line.trim_end().to_string());
                    return Some(format!("{tag} OK IDLE done\r\n"));
                }
                _ = arrived => {
                    let exists = lock(&self.state).messages.len();
                    write.write_all(format!("* {exists} EXISTS\r\n").as_bytes()).await.ok()?;
                }
            }
        }
    }

    fn answer(&self, tag: &str, command: &str, upper: &str) -> String {
        let mut st = lock(&self.state);
        let words: Vec<&str> = command.split(' ').collect();
        let ok = |text: &str| format!("{tag} OK {text}\r\n");
        match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("CAPABILITY") => {
                let caps = st.caps.join(" ");
                format!("* CAPABILITY IMAP4rev1 {caps}\r\n{}", ok("done"))
            }
            Some("LOGIN") => ok("logged in"),
            Some("NOOP") => ok("done"),
            Some("LOGOUT") => format!("* BYE bye\r\n{}", ok("logged out")),
            Some("SELECT") | Some("EXAMINE") => format!(
                "* {} EXISTS\r\n* OK [UIDVALIDITY {}] ok\r\n* OK [UIDNEXT {}] ok\r\n{}",
                st.messages.len(),
                st.uidvalidity,
                st.next_uid,
                ok("[READ-WRITE] selected")
            ),
            Some("CREATE") => {
                let name = unquote(words.get(1).copied().unwrap_or(""));
                if let Entry::Vacant(slot) = st.folders.entry(name) {
                    slot.insert(Vec::new());
                    ok("created")
                } else {
                    format!("{tag} NO [ALREADYEXISTS] Mailbox already exists\r\n")
                }
            }
            Some("EXPUNGE") => {
                st.messages.retain(|_, m| !m.flags.contains("\\Deleted"));
                ok("expunged")
            }
            Some("UID") => uid_command(&mut st, tag, &words[1..], upper),
            _ => format!("{tag} BAD unknown command\r\n"),
        }
    }
}

fn uid_command(st: &mut State, tag: &str, words: &[&str], upper: &str) -> String {
    let sub = words
        .first()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    let set_word = if sub == "SEARCH" {
        words.get(2)
    } else {
        words.get(1)
    };
    let max = st.messages.keys().max().copied().unwrap_or(0);
    let set = parse_set(set_word.copied().unwrap_or(""), max);
    let all = sub == "SEARCH" && upper.ends_with(" ALL");
    let hits: Vec<u32> = st
        .messages
        .keys()
        .copied()
        .filter(|u| all || set.contains(u))
        .collect();
    let ok = format!("{tag} OK {sub} done\r\n");
    match sub.as_str() {
        "SEARCH" => {
            let unseen = upper.contains("UNSEEN");
            let undeleted = upper.contains("UNDELETED");
            let found: Vec<String> = hits
                .iter()
                .filter(|u| !unseen || !st.messages[u].flags.contains("\\Seen"))
                .filter(|u| !undeleted || !st.messages[u].flags.contains("\\Deleted"))
                .map(u32::to_string)
                .collect();
            format!("* SEARCH {}\r\n{ok}", found.join(" "))
        }
        "FETCH" => {
            let mut out = String::new();
            for uid in hits {
                let seq = st.messages.keys().position(|&u| u == uid).unwrap_or(0) + 1;
                let raw = &st.messages[&uid].raw;
                out.push_str(&format!(
                    "* {seq} FETCH (UID {uid} {})\r\n",
                    item(raw, upper)
                ));
            }
            out + &ok
        }
        "STORE" => {
            let flag = if upper.contains("\\SEEN") {
                "\\Seen"
            } else {
                "\\Deleted"
            };
            for uid in hits {
                if let Some(m) = st.messages.get_mut(&uid) {
                    m.flags.insert(flag.to_string());
                }
            }
            ok
        }
        "COPY" | "MOVE" => {
            let folder = unquote(words.get(2).copied().unwrap_or(""));
            if !st.folders.contains_key(&folder) {
                return format!("{tag} NO [TRYCREATE] no such folder\r\n");
            }
            for uid in hits {
                let raw = st.messages[&uid].raw.clone();
                st.folders.entry(folder.clone()).or_default().push(raw);
                if sub == "MOVE" {
                    st.messages.remove(&uid);
                }
            }
            ok
        }
        "EXPUNGE" => {
            st.messages
                .retain(|uid, m| !(set.contains(uid) && m.flags.contains("\\Deleted")));
            ok
        }
        _ => format!("{tag} BAD unknown UID command\r\n"),
    }
}

/// The one FETCH item asked for in `upper`: `RFC822.SIZE`,
/// `BODY.PEEK[HEADER]` (optionally partial, `<0.N>`) or the whole mail.
fn item(raw: &[u8], upper: &str) -> String {
    let literal = |name: &str, bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        format!("{name} {{{}}}\r\n{text}", text.len())
    };
    if upper.contains("RFC822.SIZE") {
        return format!("RFC822.SIZE {}", raw.len());
    }
    if let Some(at) = upper.find("BODY.PEEK[HEADER]") {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |p| p + 4);
        let rest = &upper[at + "BODY.PEEK[HEADER]".len()..];
        let partial = rest
            .strip_prefix("<0.")
            .and_then(|r| r.split('>').next())
            .and_then(|n| n.parse::<usize>().ok());
        return match partial {
            Some(n) => literal("BODY[HEADER]<0>", &raw[..end.min(n)]),
            None => literal("BODY[HEADER]", &raw[..end]),
        };
    }
    literal("BODY[]", raw)
}

/// `1:3,7,9:*` with `*` = the highest UID; `a:b` is the same as `b:a`.
fn parse_set(text: &str, max: u32) -> BTreeSet<u32> {
    let num = |s: &str| {
        if s == "*" {
            max
        } else {
            s.parse().unwrap_or(0)
        }
    };
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        let (a, b) = (num(a), num(b));
        set.extend(a.min(b)..=a.max(b));
    }
    set
}

fn unquote(text: &str) -> String {
    text.trim_matches('"').to_string()
}
