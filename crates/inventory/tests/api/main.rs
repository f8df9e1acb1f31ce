//! Inventory over real HTTP and a real bus, against SQLite and PostgreSQL.

mod helpers;
mod reservations;
mod stock;
