//! postdesk: an email-driven support-ticketing daemon.
//!
//! Customers write to the support address; postdesk reads that mailbox over
//! IMAP (or LMTP), threads each mail into a ticket, stores everything in
//! SQLite (or PostgreSQL, shared by several daemons), sends
//! confirmations and status mails over SMTP and serves a read-only status
//! page.
//!
//! # Layout
//!
//! - [`settings`]: the typed, validated configuration tree.
//! - [`domain`]: tickets, numbers, statuses and their transitions.
//! - [`ingest`]: parse → classify → thread → strip → apply. Pure, no I/O.
//! - [`outbound`]: composing outgoing mail (pure) and the outbox worker.
//! - [`imap`]: fetches raw mail from the server; bytes in, nothing else.
//! - [`oauth`]: OAuth2 access tokens for XOAUTH2 logins to IMAP and SMTP.
//! - [`lmtp`]: the LMTP server the MTA delivers to (RFC 2033).
//! - [`intake`]: the one receive seam of IMAP, LMTP and the pipe: typed
//!   source in, verdict out.
//! - [`store`]: the only place that speaks SQL (SQLite or PostgreSQL).
//! - [`lease`]: which of several daemons reads which mailbox.
//! - [`web`]: the read-only status page.
//! - [`tokens`]: random and HMAC-signed tokens.
//! - [`terminal`]: mail text made safe for the command line's output.
//! - [`logging`]: the log filter (credential-bearing crates held at info).
//! - [`cli`]: the larger command-line handlers.
//! - [`app`]: builds and owns the daemon's tasks and their shutdown.
//! - [`allocator`]: glibc's arenas and mmap threshold, set first in `main`.

pub mod allocator;
pub mod app;
pub mod cli;
pub mod domain;
pub mod imap;
pub mod ingest;
pub mod intake;
pub mod lease;
pub mod lmtp;
pub mod logging;
pub mod oauth;
pub mod outbound;
pub mod settings;
pub mod store;
pub mod terminal;
pub mod tokens;
pub mod web;
