//! Notifications over real HTTP, a real bus, a real mailbox folder and a real SMTP
//! server, against SQLite and PostgreSQL.

mod audit;
mod delivery;
mod helpers;
mod reading;
mod retries;
