//! One conformance suite for every bus adapter: each scenario runs as
//! `embedded::conformance_…` (the SQLite bus) and `jetstream::conformance_…` (NATS
//! JetStream, on a server of the test's own that it can kill and restart).

mod harness;
mod limits;
mod scenarios;
