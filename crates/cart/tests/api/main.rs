//! The cart over real HTTP and gRPC, beside a real catalog and inventory sharing one
//! embedded bus, against SQLite and PostgreSQL.

mod cart;
mod events;
mod helpers;
mod refusals;
mod security;
