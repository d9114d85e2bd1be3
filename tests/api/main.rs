//! Integration tests: each test spawns the real application on port 0 with its own
//! data dir, embedded S3 endpoint and database (SQLite by default; PostgreSQL when
//! `INTAKE_TEST_DB=postgres`).

mod helpers;

mod admin;
mod archive_check;
mod auth;
mod classes;
mod cli;
mod cli_check;
mod cli_errors;
mod cli_many;
mod cli_outcome;
mod cli_resume;
mod cli_server_crash;
mod crash_saving;
mod errors;
mod faults;
mod health;
mod history;
mod lifecycle;
mod migrations;
mod operator;
mod pipeline;
mod record_history;
mod records;
mod uploads;
mod walkthrough;
mod ws;
