//! Payments over real HTTP, gRPC and a real embedded bus, against SQLite and PostgreSQL.

mod fraud;
mod helpers;
mod ledger;
mod methods;
mod saga;
