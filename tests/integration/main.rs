//! Integration tests against real databases: SQLite files, and PostgreSQL and MariaDB servers
//! started by `testkit`. Every scenario runs on every backend.

mod common;
mod connections;
mod contention;
mod crud;
mod examples;
mod migrate;
mod nesting;
mod outcomes;
mod proxy;
mod queries;
mod scopes;
mod stress;
mod two_phase;
mod values;
