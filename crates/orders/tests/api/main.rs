//! Orders over real SQLite and PostgreSQL: its use cases at the database (the event
//! store, the read model, idempotent placement, deadlines), and its REST API over real
//! HTTP beside the real catalog, inventory, cart and payments on one embedded bus.

mod deadlines;
mod helpers;
mod http;
mod placement;
mod store;
