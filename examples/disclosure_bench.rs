//! Disclosure benchmark: suppression plus its audit on a generated table with margins.
//!
//!   cargo run --release --example disclosure_bench -- 40 40 32     # sizes of each dimension
//!
//! Prints: cells (margins included), primary and complementary suppressions, seconds, peak
//! RSS in KiB. Counts are skewed like small-area health data: most cells small or zero.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use steward::disclosure::{suppress, Table};

#[path = "support/rss.rs"]
mod rss;
use rss::peak_rss_kib;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() {
        return Err("usage: disclosure_bench SIZE [SIZE ...]".into());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let cells: usize = sizes.iter().product();
    // A third of the cells small (1-10), a fifth empty, the rest spread up to a few hundred.
    let interior: Vec<u64> = (0..cells)
        .map(|_| match rng.gen_range(0..15) {
            0..=4 => rng.gen_range(1..=10),
            5..=7 => 0,
            _ => rng.gen_range(11..=400),
        })
        .collect();
    let table = Table::from_interior(&sizes, &interior)?;
    let start = Instant::now();
    let result = suppress(&table, 11)?;
    let (primary, complementary) = result.counts();
    println!(
        "{} {} {} {:.2} {}",
        table.len(),
        primary,
        complementary,
        start.elapsed().as_secs_f64(),
        peak_rss_kib()
    );
    Ok(())
}
