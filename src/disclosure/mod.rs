//! Aggregate tables and their disclosure control (seed 003, the aggregate standard; seed 001
//! section 4.3 J, publication review): count tables with margins (`table.rs`), small-cell
//! suppression with complementary cells (`suppress.rs`, with the hypercubes of `cube.rs`), the
//! attacker's linear programs that prove no suppressed cell can be worked back out
//! (`audit.rs`), and the review of a table a recipient means to publish (`review.rs`). All of
//! it is pure code over counts, except `service.rs`, which stores and logs the reviews. Pure code over counts:
//! no I/O and no personal data.

pub mod audit;
pub mod cube;
pub mod exact;
#[cfg(test)]
mod props;
pub mod publish;
pub mod review;
pub mod service;
pub mod suppress;
pub mod table;

pub use audit::{audit, Interval};
pub use suppress::{suppress, CellStatus, SuppressError, Suppression};
pub use table::{Table, TableError};
