//! Information loss of the suppression: on small generated tables, the cells `suppress` hides
//! against the fewest any protected suppression can hide (`disclosure::exact`).
//!
//!   cargo run --release --example suppression_loss -- 30      # tables to compare
//!
//! Prints one line per table (sizes, cells with margins, primary cells, hidden by `suppress`,
//! the exact minimum, their ratio, cut rounds, seconds of each), then the worst and mean ratio.

use std::time::Instant;

use steward::disclosure::exact::{minimum, small_tables};
use steward::disclosure::suppress;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).map_or(Ok(30), |a| a.parse())?;
    println!("sizes cells primary suppress exact ratio rounds suppress_s exact_s");
    let mut ratios = Vec::new();
    for table in small_tables(count, 11) {
        let start = Instant::now();
        let (primary, complementary) = suppress(&table, 11)?.counts();
        let heuristic_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let exact = minimum(&table, 11, 400)?;
        let exact_s = start.elapsed().as_secs_f64();
        let hidden = primary + complementary;
        let ratio = if exact.hidden.is_empty() {
            1.0
        } else {
            hidden as f64 / exact.hidden.len() as f64
        };
        ratios.push(ratio);
        println!(
            "{:?} {} {} {} {} {:.2} {} {:.3} {:.3}",
            table.sizes(),
            table.len(),
            primary,
            hidden,
            exact.hidden.len(),
            ratio,
            exact.rounds,
            heuristic_s,
            exact_s
        );
    }
    let worst = ratios.iter().copied().fold(1.0, f64::max);
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    println!(
        "worst ratio {worst:.2}, mean ratio {mean:.3} over {} tables",
        ratios.len()
    );
    Ok(())
}
