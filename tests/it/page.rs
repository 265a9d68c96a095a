//! The status page in process: the router over a store in a temp dir,
//! filled through the public API, requests sent with `oneshot`. Checks what
//! a link shows and what it must never show (other tickets, internal notes,
//! automatic mail, live markup), attachments, rotation, the agent queue's
//! key and `/metrics`. The fixture is shared with the browser test.

mod access;
mod customer;
pub mod fixture;
mod operator;

pub use fixture::*;
