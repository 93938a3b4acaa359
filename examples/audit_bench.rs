//! Benchmark driver for the access log (run by `bench/access_log.sh`).
//!
//! `audit_bench append URL WRITERS SECONDS`: WRITERS tasks call `AuditLog::append` (durable when
//! it returns) in a loop for SECONDS while a sequencer integrates; prints
//! `appends_per_s lag_p50_ms lag_p99_ms lag_max_ms events`.
//!
//! `audit_bench verify URL RECORDS`: fills the log to RECORDS records (if it has fewer), then
//! times the full verification; prints `records seconds peak_rss_kib`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row;
use steward::audit::checkpoint::CheckpointSigner;
use steward::audit::sequencer::{Sequencer, SequencerConfig};
use steward::audit::verify::{self, DatabaseLog, Expectations};
use steward::audit::{AccessEvent, Action, Actor, AuditLog, Client, Outcome, Reason, Target};
use steward::clock::{SharedClock, SystemClock};
use steward::db::{ConnectOptions, Database};

#[path = "support/rss.rs"]
mod rss;
use rss::peak_rss_kib;

/// A refusal, the event a flood of bad requests writes.
fn event(i: u64) -> AccessEvent {
    AccessEvent::new(
        Actor::User(uuid::Uuid::from_u128(u128::from(i))),
        Action::Authorization,
        Target::Route("/api/v1/releases/{id}"),
        Outcome::Denied,
    )
    .with_reason(Reason::new("no role of the user grants this action"))
    .with_client(&Client {
        addr: Some(std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8])),
        user_agent: Some(steward::audit::UserAgent::from_header(b"bench/1.0")),
    })
}

fn sequencer(db: &Database, clock: &SharedClock) -> Sequencer {
    Sequencer::new(
        db.clone(),
        clock.clone(),
        Arc::new(CheckpointSigner::new(
            "bench.local/access-log",
            ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        )),
        SequencerConfig {
            batch: 5000,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(60),
            interval: Duration::from_millis(100),
            export_dir: None,
        },
    )
}

fn parse_time(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("stored times are RFC 3339")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: audit_bench append URL WRITERS SECONDS | audit_bench verify URL RECORDS";
    let (mode, url) = match (args.get(1), args.get(2)) {
        (Some(mode), Some(url)) => (mode.as_str(), url.as_str()),
        _ => return Err(usage.into()),
    };
    let db = Database::connect(
        url,
        &ConnectOptions {
            max_connections: 80,
            sqlite_busy_timeout: Duration::from_secs(30),
            password: None,
        },
    )
    .await?;
    db.migrate().await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let audit = AuditLog::new(db.clone(), clock.clone());
    let sequencer = sequencer(&db, &clock);
    match mode {
        "append" => {
            let writers: u64 = args.get(3).ok_or(usage)?.parse()?;
            let seconds: u64 = args.get(4).ok_or(usage)?.parse()?;
            let first: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) AS m FROM access_events")
                .fetch_one(db.pool())
                .await?
                .try_get("m")?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            // AUDIT_BENCH_NO_SEQUENCER=1 measures the append path alone (integration afterwards).
            let integrate_during = std::env::var_os("AUDIT_BENCH_NO_SEQUENCER").is_none();
            let running = tokio::spawn({
                let sequencer = sequencer.clone();
                async move {
                    if integrate_during {
                        sequencer
                            .run(async {
                                let _ = stop_rx.await;
                            })
                            .await
                    } else {
                        let _ = stop_rx.await;
                        sequencer.integrate_all().await.expect("integrate");
                    }
                }
            });
            let done = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..writers)
                .map(|w| {
                    let (audit, done, count) = (audit.clone(), done.clone(), count.clone());
                    tokio::spawn(async move {
                        let mut i = w << 32;
                        while !done.load(Ordering::Relaxed) {
                            audit.append(&event(i)).await.expect("append");
                            count.fetch_add(1, Ordering::Relaxed);
                            i += 1;
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            done.store(true, Ordering::Relaxed);
            for task in tasks {
                task.await?;
            }
            let elapsed = start.elapsed().as_secs_f64();
            let appended = count.load(Ordering::Relaxed);
            // Let the sequencer finish, then read commit-to-position lag of this run's events.
            let _ = stop_tx.send(());
            running.await?;
            let rows = sqlx::query(
                "SELECT e.at, l.integrated_at FROM access_events e \
                 JOIN access_log l ON l.event_id = e.id WHERE e.id > $1",
            )
            .bind(first)
            .fetch_all(db.pool())
            .await?;
            let mut lags: Vec<f64> = rows
                .iter()
                .map(|r| {
                    let at: String = r.get("at");
                    let integrated: String = r.get("integrated_at");
                    (parse_time(&integrated) - parse_time(&at)).as_seconds_f64() * 1000.0
                })
                .collect();
            lags.sort_by(f64::total_cmp);
            let pick = |q: f64| lags[((lags.len() as f64 - 1.0) * q).round() as usize];
            println!(
                "{:.0} {:.1} {:.1} {:.1} {}",
                appended as f64 / elapsed,
                pick(0.5),
                pick(0.99),
                lags.last().copied().unwrap_or(0.0),
                lags.len()
            );
        }
        "verify" => {
            let records: u64 = args.get(3).ok_or(usage)?.parse()?;
            let have = sequencer.integrate_all().await?;
            if have < records {
                let missing = records - have;
                let writers = 64;
                let tasks: Vec<_> = (0..writers)
                    .map(|w| {
                        let audit = audit.clone();
                        tokio::spawn(async move {
                            let mut i = w;
                            while i < missing {
                                audit.append(&event(i)).await.expect("append");
                                i += writers;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await?;
                }
                sequencer.integrate_all().await?;
                sequencer.checkpoint_now().await?;
            }
            let expect = Expectations {
                verifier_key: sequencer.signer().verifier_key(),
                exported: Vec::new(),
                trusted: None,
                integrate_before: "0000".into(),
            };
            let rss_before = peak_rss_kib();
            let start = Instant::now();
            let verified = verify::verify_log(&mut DatabaseLog::open(&db).await?, &expect)
                .await?
                .map_err(|p| format!("verification failed: {p}"))?;
            println!(
                "{} {:.2} {} {}",
                verified.records,
                start.elapsed().as_secs_f64(),
                peak_rss_kib(),
                rss_before
            );
        }
        "scan" => {
            // Reading alone, for comparison with `verify` (which also hashes).
            use steward::audit::verify::LogSource;
            let mut source = DatabaseLog::open(&db).await?;
            let start = Instant::now();
            let (mut from, mut rows) = (1i64, 0usize);
            loop {
                let page = source.log_page(from, 10_000).await?;
                if page.is_empty() {
                    break;
                }
                rows += page.len();
                from += page.len() as i64;
            }
            println!("{rows} {:.2}", start.elapsed().as_secs_f64());
        }
        _ => return Err(usage.into()),
    }
    db.close().await;
    Ok(())
}
