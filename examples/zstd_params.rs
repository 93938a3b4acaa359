//! Compares zstd parameter sets on extract plaintexts, as the seal stage compresses them (one
//! frame per 4 MiB chunk): the CPU seconds and compressed size of each, in alternating rounds
//! so that a noisy machine weighs on all of them alike.
//!
//! Usage: zstd_params ROUNDS PLAINTEXT.csv...
//! The plaintexts are extract outputs (decrypted and decompressed), e.g. of bench/extract.sh.

use std::time::Instant;

use steward::extract::seal;
use zstd::zstd_safe::CParameter;

const CHUNK: usize = 4 * 1024 * 1024;

/// One candidate: a level, and parameters set over it.
struct Candidate {
    name: &'static str,
    level: i32,
    overrides: Vec<CParameter>,
}

fn candidates() -> Vec<Candidate> {
    let set = |name, level, overrides| Candidate {
        name,
        level,
        overrides,
    };
    vec![
        // The reference pipeline's `zstd -3`; the first is what the others are compared with.
        set("level 3", 3, Vec::new()),
        set("level 2", 2, Vec::new()),
        set(
            "seal stage's",
            seal::ZSTD_LEVEL,
            vec![CParameter::MinMatch(seal::ZSTD_MIN_MATCH)],
        ),
        set("level 1", 1, Vec::new()),
    ]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(rounds), files) = (args.get(1), args.get(2..).unwrap_or_default()) else {
        return Err("usage: zstd_params ROUNDS PLAINTEXT.csv...".into());
    };
    let rounds: usize = rounds.parse()?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let candidates = candidates();
    for file in files {
        let data = std::fs::read(file)?;
        let mut seconds = vec![Vec::new(); candidates.len()];
        let mut sizes = vec![0usize; candidates.len()];
        for _ in 0..rounds {
            for (i, candidate) in candidates.iter().enumerate() {
                let mut context = zstd::bulk::Compressor::new(candidate.level)?;
                for parameter in &candidate.overrides {
                    context.set_parameter(*parameter)?;
                }
                let mut frame = Vec::new();
                let started = Instant::now();
                let mut size = 0;
                for chunk in data.chunks(CHUNK) {
                    frame.clear();
                    frame.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
                    context.compress_to_buffer(chunk, &mut frame)?;
                    size += frame.len();
                }
                seconds[i].push(started.elapsed().as_secs_f64());
                sizes[i] = size;
            }
        }
        println!("{file} ({} bytes)", data.len());
        for (i, candidate) in candidates.iter().enumerate() {
            seconds[i].sort_by(f64::total_cmp);
            let median = seconds[i][seconds[i].len() / 2];
            println!(
                "  {:<24} {:6.2} s  {:>11} bytes  ({:+.2}% size, {:+.1}% time vs level 3)",
                candidate.name,
                median,
                sizes[i],
                (sizes[i] as f64 / sizes[0] as f64 - 1.0) * 100.0,
                (median / seconds[0][seconds[0].len() / 2] - 1.0) * 100.0
            );
        }
    }
    Ok(())
}
