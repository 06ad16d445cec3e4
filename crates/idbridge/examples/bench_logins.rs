//! Load driver for complete WeChat website logins through the broker and the
//! WeChat simulator, as a browser and an app do them: authorize → WeChat's QR page
//! → confirm as a test user → broker callback (code exchange and userinfo at the
//! simulator) → code redeemed at /token. Used by bench/wechat.sh.
//!
//! bench_logins BASE CLIENT_ID CLIENT_SECRET REDIRECT_URI CONNECTOR CONCURRENCY SECONDS

use std::time::{Duration, Instant};

fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn location(r: &reqwest::Response) -> Result<String, String> {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("no redirect (status {})", r.status()))
}

struct Job {
    base: String,
    client_id: String,
    secret: String,
    redirect_uri: String,
    connector: String,
}

async fn one_login(http: &reqwest::Client, job: &Job, n: u64) -> Result<(), String> {
    let e = |e: reqwest::Error| e.to_string();
    let verifier = format!("bench-verifier-{n:020}-0123456789abcdefghijkl");
    let challenge = idbridge_tokens::pkce_s256(&verifier);
    let mut authorize =
        url::Url::parse(&format!("{}/authorize", job.base)).map_err(|e| e.to_string())?;
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &job.client_id)
        .append_pair("redirect_uri", &job.redirect_uri)
        .append_pair("scope", "openid profile")
        .append_pair("state", "bench")
        .append_pair("prompt", "login")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("connector", &job.connector);
    let wechat = location(&http.get(authorize.as_str()).send().await.map_err(e)?)?;
    let page = http
        .get(&wechat)
        .send()
        .await
        .map_err(e)?
        .text()
        .await
        .map_err(e)?;
    let marker = "name=\"flow\" value=\"";
    let start = page.find(marker).ok_or("no scan page")? + marker.len();
    let end = page[start..].find('"').ok_or("bad scan page")? + start;
    let sim = wechat.split("/connect/").next().unwrap_or_default();
    let decided = http
        .post(format!("{sim}/connect/sim/decide"))
        .form(&[("flow", &page[start..end]), ("user", "alice")])
        .send()
        .await
        .map_err(e)?;
    let callback = location(&decided)?;
    let back = location(&http.get(&callback).send().await.map_err(e)?)?;
    let code = param(&back, "code").ok_or_else(|| format!("no code: {back}"))?;
    let token = http
        .post(format!("{}/token", job.base))
        .basic_auth(&job.client_id, Some(&job.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", job.redirect_uri.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(e)?;
    if token.status() != 200 {
        return Err(format!("token endpoint answered {}", token.status()));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        eprintln!("usage: bench_logins BASE CLIENT_ID CLIENT_SECRET REDIRECT_URI CONNECTOR CONCURRENCY SECONDS");
        std::process::exit(2);
    }
    let job = std::sync::Arc::new(Job {
        base: a[1].clone(),
        client_id: a[2].clone(),
        secret: a[3].clone(),
        redirect_uri: a[4].clone(),
        connector: a[5].clone(),
    });
    let concurrency: usize = a[6].parse()?;
    let seconds: u64 = a[7].parse()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            // One browser per worker: its own cookies.
            let http = reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| e.to_string())?;
            let (mut ok, mut failed, mut lat, mut first_error) = (0u64, 0u64, Vec::new(), None);
            let mut n = (w as u64) << 32;
            while Instant::now() < deadline {
                let t = Instant::now();
                n += 1;
                match one_login(&http, &job, n).await {
                    Ok(()) => {
                        ok += 1;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            Ok::<_, String>((ok, failed, lat, first_error))
        }));
    }
    let (mut ok, mut failed, mut lat, mut errors) = (0, 0, Vec::new(), Vec::new());
    for t in tasks {
        let (o, f, l, e) = t.await??;
        ok += o;
        failed += f;
        lat.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "LOGINS ok={ok} failed={failed} seconds={elapsed:.1} logins_per_s={:.0} p50_ms={:.1} p99_ms={:.1} concurrency={concurrency}",
        ok as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    if let Some(e) = errors.first() {
        println!("first error: {e}");
    }
    Ok(())
}
