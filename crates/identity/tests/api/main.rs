//! Identity's API over real HTTP, against SQLite and PostgreSQL.

mod accounts;
mod attacks;
mod bad_input;
mod helpers;
mod keys;
mod outage;
mod tokens;
