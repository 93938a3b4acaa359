//! The one integration test binary: every test spawns its own Steward (port 0, fresh data
//! directory, fresh database, fresh object store, manual clock).

mod helpers;
mod s3_server;
mod slow_clients;

mod audit_atomic;
mod audit_log;
mod audit_review;
mod auth_authorize;
mod auth_cli;
mod auth_findings;
mod auth_login;
mod auth_matrix;
mod auth_tokens;
mod cli;
mod config;
mod database;
mod download_support;
mod downloads;
mod extract_crash;
mod extract_job;
mod extract_pipeline;
mod extract_rows;
mod health;
mod jobs_api;
mod jobs_cli;
mod jobs_queue;
mod policy_catalog;
mod policy_cli;
mod policy_golden;
mod policy_members;
mod policy_plan;
mod policy_props;
mod policy_support;
mod policy_synth;
mod policy_validation;
mod release_cli;
mod release_duties;
mod release_expiry;
mod release_grants;
mod release_letter;
mod release_lifecycle;
mod release_support;
mod replicas;
mod storage;
mod tls;
