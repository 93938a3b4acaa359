//! Pure domain types shared by every module: no I/O here.

pub mod level;
