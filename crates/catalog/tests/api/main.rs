//! The catalog's API, exercised over real HTTP and gRPC against SQLite and PostgreSQL.

mod admin;
mod admin_input;
mod attacks;
mod bad_input;
mod events;
mod grpc;
mod health;
mod helpers;
mod products;
