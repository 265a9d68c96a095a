//! Fault tests (issue #6, rules 1, 6 and 7 of DESIGN.md): the real daemon,
//! as a child process, against a real Dovecot and Postfix while things go
//! wrong: SIGKILL in the middle of a backlog, a server or the MTA gone for
//! a while, a connection cut or frozen mid-fetch, a mailbox recreated with
//! a new UIDVALIDITY, poison mail. Tests that stop a server start a mail
//! stack of their own (`stack::PrivateStack`), so the shared one is never
//! disturbed. Every wait is bounded.
//!
//! A server that accepts and then never answers (not even a greeting) is
//! covered at unit level against the in-process fake
//! (`src/imap/tests.rs`: `a_silent_server_times_out_reconnects_and_still_shuts_down_promptly`);
//! here the same timeout is shown mid-session, against Dovecot.

mod backlog;
mod crash;
pub(crate) mod instances;
mod lmtp;
mod mailbox;
mod outage;
mod poison;
mod proxy;
pub(crate) mod rig;
pub(crate) mod stack;
