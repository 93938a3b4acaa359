//! Steward: delivers sensitive health-data extracts to approved recipients under a Data Use
//! Agreement, and keeps control of them afterwards. See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod delivery;
pub mod destruction;
pub mod disclosure;
pub mod domain;
pub mod extract;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod pdf;
pub mod policy;
pub mod release;
pub mod state;
pub mod storage;
pub mod synth;
pub mod telemetry;
