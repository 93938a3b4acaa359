//! Pure domain types shared by every module: no I/O here.

pub mod aggregate;
pub mod committee;
pub mod dua;
pub mod ids;
pub mod level;
pub mod release;
pub mod request;
pub mod role;
