//! Seeds refresh-token grants for the refresh benchmark (bench/refresh.sh): as if
//! N people had signed in to the `bench` client. Writes one refresh token per line.
//!
//! cargo run --release -p idbridge --example bench_seed -- DB_URL COUNT OUT_FILE

use idbridge_store::{CodeRow, FamilyRow, FirstLogin, NewLogin, Store, StoreOptions};
use idbridge_tokens::{hash_token, random_token};
use std::io::Write;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(count), Some(out)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: bench_seed DB_URL COUNT OUT_FILE");
        std::process::exit(2);
    };
    let count: usize = count.parse()?;
    let store = Store::connect(url, StoreOptions::default()).await?;
    store.migrate().await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tokens = Vec::new();
            let mut user_id = String::new();
            for i in (w..count).step_by(workers) {
                if i % 10 == w % 10 || user_id.is_empty() {
                    let login = NewLogin {
                        connector_id: "bench".into(),
                        subject: format!("person-{i}"),
                        link: None,
                        name: Some(format!("Person {i}")),
                        picture: None,
                        locale: None,
                        profile: serde_json::json!({}),
                        upstream_tokens: None,
                        email: None,
                    };
                    let user = match store
                        .resolve_login(login, FirstLogin::Create, random_token(16)?, now)
                        .await?
                    {
                        idbridge_store::LoginResolution::Created(u)
                        | idbridge_store::LoginResolution::Existing(u)
                        | idbridge_store::LoginResolution::Linked(u)
                        | idbridge_store::LoginResolution::LinkedByEmail(u) => u,
                        idbridge_store::LoginResolution::NotLinked
                        | idbridge_store::LoginResolution::EmailHeld { .. } => {
                            return Err("not linked".into())
                        }
                    };
                    user_id = user.id;
                }
                let code_hash = hash_token(&random_token(32)?);
                store
                    .insert_code(
                        CodeRow {
                            code_hash: code_hash.clone(),
                            client_id: "bench".into(),
                            user_id: user_id.clone(),
                            payload: serde_json::json!({}),
                            created_at: now,
                            expires_at: now + 60,
                            used_at: None,
                            family_id: None,
                        },
                        None,
                    )
                    .await?;
                let token = random_token(32)?;
                let family = FamilyRow {
                    id: random_token(16)?,
                    client_id: "bench".into(),
                    user_id: user_id.clone(),
                    scope: "openid profile offline_access".into(),
                    sso_session_id: None,
                    payload: serde_json::json!({ "auth_time": now }),
                    created_at: now,
                    last_used_at: now,
                    absolute_expires_at: now + 86400,
                    revoked_at: None,
                    revoked_reason: None,
                };
                store
                    .redeem_code(&code_hash, family, Some(hash_token(&token)), now)
                    .await?;
                tokens.push(token);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(tokens)
        }));
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut written = 0;
    for t in tasks {
        for token in t.await?.map_err(|e| e.to_string())? {
            writeln!(file, "{token}")?;
            written += 1;
        }
    }
    file.flush()?;
    eprintln!("seeded {written} refresh tokens");
    Ok(())
}
