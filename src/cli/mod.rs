//! Command-line handlers that are more than a few lines: each command in
//! its own file, called from `main.rs` (which only parses arguments and
//! dispatches). Handlers print for people (or JSON with `--json`) and
//! return the process's exit code; the work itself lives in the store, the
//! pipeline or the outbound modules.

pub mod import;
pub mod ingest;
pub mod migrate_db;
pub mod oauth;
pub mod outbox;
pub mod search;
pub mod templates;
