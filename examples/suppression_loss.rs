//! Information loss of the suppression: on small generated tables, the cells `suppress` hides
//! against the fewest any protected suppression can hide (`disclosure::exact`).
//!
//!   cargo run --release --example suppression_loss -- 30      # tables to compare
//!
//! Prints one line per table (sizes, cells with margins, primary cells, cells hidden by the
//! heuristic alone, by `suppress` as shipped (which tries the exact minimum of a small table
//! for a few rounds), the exact minimum, both ratios, cut rounds, seconds of each), then the
//! worst and mean ratios.

use std::time::Instant;

use steward::disclosure::exact::{minimum, small_tables};
use steward::disclosure::suppress;
use steward::disclosure::suppress::suppress_with;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args().nth(1).map_or(Ok(30), |a| a.parse())?;
    println!("sizes cells primary heuristic suppress exact heuristic_ratio ratio rounds suppress_s exact_s");
    let mut ratios = Vec::new();
    let mut heuristic_ratios = Vec::new();
    for table in small_tables(count, 11) {
        let (p, c) = suppress_with(&table, 11, 0)?.counts();
        let heuristic = p + c;
        let start = Instant::now();
        let (primary, complementary) = suppress(&table, 11)?.counts();
        let heuristic_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let exact = match minimum(&table, 11, 150) {
            Ok(exact) => exact,
            Err(e) => {
                println!(
                    "{:?} {} {primary}: no exact minimum ({e})",
                    table.sizes(),
                    table.len()
                );
                continue;
            }
        };
        let exact_s = start.elapsed().as_secs_f64();
        let hidden = primary + complementary;
        let of_exact = |n: usize| {
            if exact.hidden.is_empty() {
                1.0
            } else {
                n as f64 / exact.hidden.len() as f64
            }
        };
        let ratio = of_exact(hidden);
        ratios.push(ratio);
        heuristic_ratios.push(of_exact(heuristic));
        println!(
            "{:?} {} {} {} {} {} {:.2} {:.2} {} {:.3} {:.3}",
            table.sizes(),
            table.len(),
            primary,
            heuristic,
            hidden,
            exact.hidden.len(),
            of_exact(heuristic),
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
