//! Benchmark driver for downloads (run by `bench/download.sh`).
//!
//! `download_bench serve DIR [DATABASE_URL]`: starts a Steward (SQLite under DIR by default)
//! and takes a Level I release through request, review, approval, DUA and extract, all over
//! HTTPS, with twenty named recipients; then replaces its data file's object with 1 GiB and
//! its data dictionary's with 64 MiB (the stream does not look inside) and prints one JSON line
//! of facts (URL, CA, files, object paths, tokens), then serves until killed. Its peak RSS is
//! the server's.
//!
//! `download_bench concurrent FACTS N`: N simultaneous downloads of the 64 MiB file, spread
//! over the recipients (at most 100 each, the DUA's limit); prints `ok seconds mib_per_s`.
//!
//! `download_bench slow FACTS N SECONDS`: N readers taking 16 KiB every half second of the
//! 64 MiB file, held SECONDS, while one other recipient downloads it whole; prints `connected
//! normal_download_seconds`.
//!
//! `download_bench revoke FACTS TRIALS [URL CA]`: per trial, a download of the 1 GiB file is
//! started (from the replica at URL, trusting CA, when given), the director revokes the user at
//! the first replica, and the time from the revocation's answer to the stream's end is taken;
//! the revocation is then lifted. Prints `p50_ms p99_ms max_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use steward::app::Application;
use steward::auth::By;
use steward::clock::SystemClock;
use steward::config::Settings;
use steward::domain::role::Role;

const BIG: u64 = 1 << 30;
const SMALL: u64 = 64 << 20;
const RECIPIENTS: usize = 20;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(&args[2], args.get(3).cloned()).await,
        Some("concurrent") => concurrent(&facts(&args[2]), args[3].parse().unwrap()).await,
        Some("slow") => {
            slow(
                &facts(&args[2]),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
            )
            .await
        }
        Some("revoke") => {
            let other = args.get(4).map(|url| (url.clone(), args[5].clone()));
            revoke(&facts(&args[2]), args[3].parse().unwrap(), other).await
        }
        _ => {
            eprintln!("usage: download_bench serve DIR [URL] | concurrent FACTS N | slow FACTS N SECONDS | revoke FACTS TRIALS");
            std::process::exit(2);
        }
    }
}

fn facts(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn client(ca: &str) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .http1_only()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Deterministic bytes, produced as they are read: a large object without a large buffer.
struct Filler {
    left: u64,
    state: u64,
}

impl tokio::io::AsyncRead for Filler {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let mut chunk = vec![0u8; n];
        for word in chunk.chunks_mut(8) {
            self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1);
            word.copy_from_slice(&self.state.to_le_bytes()[..word.len()]);
        }
        buf.put_slice(&chunk);
        self.left -= n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

async fn serve(dir: &str, database: Option<String>) {
    let dir = std::path::PathBuf::from(dir);
    let synth = dir.join("synth");
    steward::synth::generate(&synth, 20_000, 3).unwrap();
    let mut vars: Vec<(String, String)> = vec![
        (
            "STEWARD_DATA_DIR".into(),
            dir.join("data").display().to_string(),
        ),
        ("STEWARD_SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("STEWARD_AUTH__ARGON2_MEMORY_KIB".into(), "64".into()),
        ("STEWARD_AUTH__ARGON2_ITERATIONS".into(), "1".into()),
        (
            "STEWARD_AUTH__REFUSALS_LOGGED_PER_MINUTE".into(),
            "1000000".into(),
        ),
        ("STEWARD_LOG__FILTER".into(), "warn".into()),
        (
            "STEWARD_EXTRACT__SOURCES__MED_CLAIM".into(),
            synth.join("med_claim.csv").display().to_string(),
        ),
    ];
    if let Some(url) = database {
        vars.push(("STEWARD_DATABASE__URL".into(), url));
    }
    vars.extend(
        std::env::vars().filter(|(k, _)| k.starts_with("STEWARD_") && k != "STEWARD_CONFIG"),
    );
    let settings = Settings::load_from(None, vars).unwrap();
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .unwrap();
    let state = app.state().clone();
    let url = app.url();
    let ca = app.local_ca().unwrap().cert_path.display().to_string();
    tokio::spawn(async move {
        app.run_until_stopped(std::future::pending()).await.unwrap();
    });
    let http = client(&ca);

    // People.
    let by = By::system();
    state.auth.create_org(&by, "Agency", true).await.unwrap();
    state
        .auth
        .create_org(&by, "State University", false)
        .await
        .unwrap();
    let login = |name: String, org: &'static str, role: Role| {
        let (state, http, url) = (state.clone(), http.clone(), url.clone());
        async move {
            let account = state
                .auth
                .create_user(&By::system(), &name, "", org, &[role])
                .await
                .unwrap();
            sqlx::query("UPDATE users SET must_change_password = 0 WHERE id = $1")
                .bind(account.user_id.to_string())
                .execute(state.db.pool())
                .await
                .unwrap();
            use secrecy::ExposeSecret;
            let uri = account.totp_uri.expose_secret().to_owned();
            let secret = uri
                .split("secret=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            let secret = base32_decode(secret);
            let code = steward::auth::totp::code_at(
                &secret,
                steward::auth::totp::step_at(time::OffsetDateTime::now_utc()),
            );
            let session: Value = http
                .post(format!("{url}/api/v1/auth/login"))
                .json(&json!({"username": name, "password": account.password.expose_secret(), "totp": code}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let access = session["access_token"].as_str().unwrap().to_owned();
            (account.user_id.to_string(), access)
        }
    };
    let (_, director) = login("director".into(), "Agency", Role::ExecutiveDirector).await;
    let (_, privacy) = login("privacy".into(), "Agency", Role::PrivacyOfficer).await;
    let (_, it) = login("it".into(), "Agency", Role::ItStaff).await;
    let mut recipients = Vec::new();
    for i in 0..RECIPIENTS {
        recipients.push(login(format!("recipient{i}"), "State University", Role::Recipient).await);
    }
    let call = |method: &'static str, path: String, token: String, body: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let response = http
                .request(method.parse().unwrap(), format!("{url}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let json: Value = response.json().await.unwrap_or(Value::Null);
            assert!(status.is_success(), "{method} {path}: {status} {json}");
            json
        }
    };
    for (_, token) in &recipients {
        let key = age::x25519::Identity::generate().to_public().to_string();
        call(
            "POST",
            "/api/v1/me/keys".into(),
            token.clone(),
            json!({"public_key": key, "label": "bench"}),
        )
        .await;
    }

    // The release, over HTTPS, as people take it.
    let requester = recipients[0].1.clone();
    let request = json!({
        "level": "I",
        "datasets": ["med_claim"],
        "elements": [{"element": "med_claim.member_gender"}, {"element": "med_claim.paid_amount"}],
        "purpose": "Benchmark",
        "ultimate_recipient": "Bench",
        "security_measures": "Bench",
        "publication_plan": "None",
        "filters": { "years": { "first": 2020, "last": 2023 } }
    });
    let made = call(
        "POST",
        "/api/v1/requests".into(),
        requester.clone(),
        request,
    )
    .await;
    let release = made["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/releases/{release}");
    call(
        "POST",
        format!("{base}/submit"),
        requester.clone(),
        json!({}),
    )
    .await;
    call("POST", format!("{base}/review"), privacy.clone(), json!({})).await;
    call(
        "POST",
        format!("{base}/approve"),
        director.clone(),
        json!({}),
    )
    .await;
    let today = time::OffsetDateTime::now_utc().date();
    let users: Vec<&String> = recipients.iter().map(|(id, _)| id).collect();
    call(
        "POST",
        format!("{base}/dua"),
        director.clone(),
        json!({
            "number": "DUA-2026-0999",
            "effective": today.to_string(),
            "expiry": (today + time::Duration::days(300)).to_string(),
            "authorized_users": users,
            "responsible": recipients[0].0,
            "download_limit": 100,
            "networks": [],
            "destruction_days": 30,
            "reason": "Benchmark"
        }),
    )
    .await;
    call("POST", format!("{base}/extract"), it.clone(), json!({})).await;
    loop {
        let shown = call("GET", base.clone(), director.clone(), Value::Null).await;
        if shown["status"] == "available" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Large objects in place of the data file and the dictionary.
    let files = steward::db::extracts::files(&state.db, release.parse().unwrap())
        .await
        .unwrap();
    let mut facts = json!({
        "url": url,
        "ca": ca,
        "release": release,
        "director": director,
        "recipients": recipients,
    });
    for (kind, name, size) in [("data", "big", BIG), ("data_dictionary", "small", SMALL)] {
        let file = files.iter().find(|f| f.kind == kind).unwrap();
        let key = steward::storage::ObjectKey::parse(&file.object_key).unwrap();
        let mut filler = Filler {
            left: size,
            state: size,
        };
        state.store.put(&key, &mut filler).await.unwrap();
        let mut object = state.store.get(&key, None).await.unwrap();
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            use tokio::io::AsyncReadExt;
            let n = object.body.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let sha = hex::encode(hasher.finalize());
        sqlx::query(
            "UPDATE extract_files SET ciphertext_bytes = $1, ciphertext_sha256 = $2 WHERE file_id = $3",
        )
        .bind(size as i64)
        .bind(&sha)
        .bind(file.id.to_string())
        .execute(state.db.pool())
        .await
        .unwrap();
        facts[name] = json!({
            "id": file.id.to_string(),
            "sha256": sha,
            "bytes": size,
            "path": state.settings.fs_store_root().join(&file.object_key).display().to_string(),
        });
    }
    // API tokens, which outlive the sessions (the benchmark takes longer than an access token).
    let mut tokens = Vec::new();
    for (_, session) in &recipients {
        let made = call(
            "POST",
            "/api/v1/me/tokens".into(),
            session.clone(),
            json!({"name": "bench", "expires_in_days": 1, "roles": ["recipient"]}),
        )
        .await;
        tokens.push(made["token"].as_str().unwrap().to_owned());
    }
    facts["tokens"] = json!(tokens);
    let director_token = call(
        "POST",
        "/api/v1/me/tokens".into(),
        director,
        json!({"name": "bench", "expires_in_days": 1, "roles": ["executive_director"]}),
    )
    .await;
    facts["director"] = director_token["token"].clone();
    facts["tls_dir"] = json!(state.settings.data_dir.join("tls").display().to_string());
    println!("{facts}");
    std::future::pending::<()>().await;
}

fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let Some(v) = alphabet.iter().position(|&a| a == c) else {
            continue;
        };
        bits = (bits << 5) | v as u64;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

async fn link(http: &reqwest::Client, facts: &Value, token: &str, file: &str) -> String {
    let url = facts["url"].as_str().unwrap();
    let made: Value = http
        .post(format!("{url}/api/v1/files/{file}/links"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("{url}{}", made["url"].as_str().expect("a link"))
}

/// Downloads `link` whole; returns its SHA-256.
async fn download(http: &reqwest::Client, link: &str, token: &str) -> Result<String, String> {
    let mut response = http
        .get(link)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(response.status().to_string());
    }
    let mut hasher = Sha256::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

async fn concurrent(facts: &Value, n: usize) {
    let http = client(facts["ca"].as_str().unwrap());
    let tokens: Vec<String> = serde_json::from_value(facts["tokens"].clone()).unwrap();
    let file = facts["small"]["id"].as_str().unwrap();
    let expected = facts["small"]["sha256"].as_str().unwrap().to_owned();
    // Links first (one per user), so the timed part is the downloads alone.
    let mut links = Vec::new();
    for token in tokens.iter().skip(1) {
        links.push(link(&http, facts, token, file).await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let user = 1 + i % (tokens.len() - 1);
            let (http, link, token) = (http.clone(), links[user - 1].clone(), tokens[user].clone());
            tokio::spawn(async move { download(&http, &link, &token).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(sha) if sha == expected => ok += 1,
            Ok(_) => eprintln!("a download differed"),
            Err(e) => eprintln!("a download failed: {e}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mib = (n as f64) * (SMALL as f64) / (1u64 << 20) as f64;
    println!("{ok} {secs:.2} {:.0}", mib / secs);
}

async fn slow(facts: &Value, n: usize, hold_secs: u64) {
    let http = client(facts["ca"].as_str().unwrap());
    let tokens: Vec<String> = serde_json::from_value(facts["tokens"].clone()).unwrap();
    let file = facts["small"]["id"].as_str().unwrap().to_owned();
    let mut links = Vec::new();
    for token in tokens.iter().skip(2) {
        links.push(link(&http, facts, token, &file).await);
    }
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(hold_secs);
    let readers: Vec<_> = (0..n)
        .map(|i| {
            let k = i % links.len();
            let (http, link, token) = (http.clone(), links[k].clone(), tokens[k + 2].clone());
            let connected = connected.clone();
            tokio::spawn(async move {
                let Ok(mut response) = http.get(&link).bearer_auth(&token).send().await else {
                    return;
                };
                if !response.status().is_success() {
                    eprintln!("slow reader refused: {}", response.status());
                    return;
                }
                connected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                while Instant::now() < deadline {
                    if !matches!(response.chunk().await, Ok(Some(_))) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        })
        .collect();
    // Let them connect, then time an ordinary download by a user who is not among them.
    tokio::time::sleep(Duration::from_secs(hold_secs / 3)).await;
    let normal = link(&http, facts, &tokens[1], &file).await;
    let started = Instant::now();
    let sha = download(&http, &normal, &tokens[1]).await;
    let normal_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        sha.as_deref(),
        Ok(facts["small"]["sha256"].as_str().unwrap())
    );
    let during = connected.load(std::sync::atomic::Ordering::SeqCst);
    for reader in readers {
        let _ = reader.await;
    }
    println!("{during} {normal_secs:.2}");
}

async fn revoke(facts: &Value, trials: usize, other: Option<(String, String)>) {
    let http = client(facts["ca"].as_str().unwrap());
    let (stream_http, stream_url) = match &other {
        Some((url, ca)) => (client(ca), url.clone()),
        None => (http.clone(), facts["url"].as_str().unwrap().to_owned()),
    };
    let url = facts["url"].as_str().unwrap();
    let tokens: Vec<String> = serde_json::from_value(facts["tokens"].clone()).unwrap();
    let recipients: Vec<(String, String)> =
        serde_json::from_value(facts["recipients"].clone()).unwrap();
    let director = facts["director"].as_str().unwrap();
    let file = facts["big"]["id"].as_str().unwrap();
    let mut latencies = Vec::new();
    for trial in 0..trials {
        let user = 1 + trial % (tokens.len() - 1);
        let link = link(&http, facts, &tokens[user], file).await;
        let link = link.replacen(url, &stream_url, 1);
        let mut response = stream_http
            .get(&link)
            .bearer_auth(&tokens[user])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let mut got = 0usize;
        while got < (1 << 20) {
            got += response.chunk().await.unwrap().unwrap().len();
        }
        let made: Value = http
            .post(format!("{url}/api/v1/revocations"))
            .bearer_auth(director)
            .json(&json!({"scope": "user", "id": recipients[user].0, "reason": "bench"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let revoked = Instant::now();
        while let Ok(Some(_)) = response.chunk().await {}
        latencies.push(revoked.elapsed().as_secs_f64() * 1000.0);
        let id = made["id"].as_str().unwrap();
        let lifted = http
            .post(format!("{url}/api/v1/revocations/{id}/lift"))
            .bearer_auth(director)
            .send()
            .await
            .unwrap();
        assert!(lifted.status().is_success());
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!("{:.1} {:.1} {:.1}", at(0.5), at(0.99), at(1.0));
}
