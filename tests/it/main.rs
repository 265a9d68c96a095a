//! The integration test binary: the real daemon against a real Dovecot and
//! Postfix started by `scripts/mailstack` (see `scripts/test`).

mod agents;
mod browser;
mod cli;
mod corpus;
mod faults;
mod first_start;
mod forgery;
mod fuzz;
mod hostile;
mod hostile_web;
mod import;
mod lmtp;
mod loops;
mod mailflow;
mod migrate_db;
mod oauth;
mod ops;
mod outbox;
mod page;
mod pg_tls;
mod queues;
mod relay_mime;
mod search;
mod support;
mod templates;
