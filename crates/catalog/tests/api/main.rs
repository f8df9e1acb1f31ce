//! The catalog's API, exercised over real HTTP and gRPC against SQLite and PostgreSQL.

mod bad_input;
mod grpc;
mod health;
mod helpers;
mod products;
