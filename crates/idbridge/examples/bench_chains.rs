//! Load driver for refresh-token chains, the same for any OpenID provider: each
//! chain refreshes with the newest refresh token its last response gave, as an
//! app keeping a session alive does. Used by bench/compare.sh against the broker
//! and the reference provider alike.
//!
//! bench_chains TOKEN_URL CLIENT_ID CLIENT_SECRET TOKENS_FILE SECONDS [RATE]
//!
//! One chain per line of TOKENS_FILE. Without RATE each chain sends its next
//! request as soon as the last one is answered (maximum throughput); with RATE
//! (requests per second over all chains) each chain keeps a fixed schedule and
//! latency counts from the scheduled time, so a stall is not hidden by the
//! driver waiting for it. Every answer must be a 200 with an access token, an ID
//! token and a new refresh token; anything else counts as failed and ends that
//! chain (its token may be spent); with BENCH_ID_TOKEN=0 in the environment an
//! answer without an ID token is accepted (a client with `id_token_on_refresh =
//! false`). The driver runs on one thread (client authentication is
//! client_secret_basic).

use std::time::{Duration, Instant};

struct Chain {
    ok: u64,
    failed: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
}

async fn one_refresh(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    token: &str,
    expect_id_token: bool,
) -> Result<String, String> {
    let body = format!("grant_type=refresh_token&refresh_token={token}");
    let r = http
        .post(url)
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let bytes = r.bytes().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let has = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .is_some_and(|s| !s.is_empty())
    };
    if !has("access_token") || (expect_id_token && !has("id_token")) {
        return Err("no access token or no ID token in the response".into());
    }
    v.get("refresh_token")
        .and_then(|x| x.as_str())
        .filter(|t| *t != token)
        .map(str::to_owned)
        .ok_or_else(|| "no new refresh token in the response".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 && a.len() != 7 {
        eprintln!(
            "usage: bench_chains TOKEN_URL CLIENT_ID CLIENT_SECRET TOKENS_FILE SECONDS [RATE]"
        );
        std::process::exit(2);
    }
    let url = a[1].clone();
    let auth = {
        use base64::Engine as _;
        let pair = format!("{}:{}", a[2], a[3]);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let tokens: Vec<String> = std::fs::read_to_string(&a[4])?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let seconds: f64 = a[5].parse()?;
    let rate: Option<f64> = a.get(6).map(|r| r.parse()).transpose()?;
    let expect_id_token = !matches!(std::env::var("BENCH_ID_TOKEN").as_deref(), Ok("0"));
    let chains = tokens.len();
    if chains == 0 {
        return Err("no tokens".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(chains)
            .timeout(Duration::from_secs(30))
            .build()?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(seconds);
        // Paced: chain i sends at started + offset_i + k * interval.
        let interval = rate.map(|r| Duration::from_secs_f64(chains as f64 / r));
        let mut tasks = Vec::new();
        for (i, first) in tokens.into_iter().enumerate() {
            let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
            tasks.push(tokio::spawn(async move {
                let mut chain = Chain {
                    ok: 0,
                    failed: 0,
                    latencies_us: Vec::new(),
                    first_error: None,
                };
                let mut token = first;
                let mut next = interval.map(|iv| started + iv.mul_f64(i as f64 / chains as f64));
                loop {
                    let scheduled = match (next, interval) {
                        (Some(at), Some(iv)) => {
                            tokio::time::sleep_until(at.into()).await;
                            next = Some(at + iv);
                            at
                        }
                        _ => Instant::now(),
                    };
                    if scheduled >= deadline {
                        break;
                    }
                    match one_refresh(&http, &url, &auth, &token, expect_id_token).await {
                        Ok(t) => {
                            chain.ok += 1;
                            let us = scheduled.elapsed().as_micros();
                            chain.latencies_us.push(us.min(u32::MAX as u128) as u32);
                            token = t;
                        }
                        Err(e) => {
                            chain.failed += 1;
                            chain.first_error.get_or_insert(e);
                            break;
                        }
                    }
                }
                chain
            }));
        }
        let (mut ok, mut failed, mut lat, mut errors) = (0u64, 0u64, Vec::new(), Vec::new());
        for t in tasks {
            let c = t.await?;
            ok += c.ok;
            failed += c.failed;
            lat.extend(c.latencies_us);
            errors.extend(c.first_error);
        }
        let elapsed = started.elapsed().as_secs_f64().min(seconds.max(0.001));
        lat.sort_unstable();
        let pct = |p: f64| {
            let i = ((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1));
            lat.get(i).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        println!(
            "RESULT chains={chains} requests={ok} failed={failed} rps={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            ok as f64 / elapsed,
            pct(0.50),
            pct(0.90),
            pct(0.99),
            lat.last().map_or(0.0, |us| *us as f64 / 1000.0),
        );
        if let Some(e) = errors.first() {
            println!("first error: {e}");
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
