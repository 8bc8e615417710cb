//! `--owner-sweep N`: what "log out everywhere" costs when owners live in data Node writes
//! (session-redis' `owner_path`): N express-session sessions written as connect-redis
//! writes them (one in 1,000 naming the swept owner at `passport.user`, none indexed),
//! then `list_by_owner` and `destroy_by_owner` through the store, against the floor of
//! any full walk measured in the same run: `SCAN` of the prefix plus a pipelined `GET` of
//! every key on one fred connection pool.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use fred::prelude::{ClientLike, Config, Expiration, KeysInterface, Pool};
use fred::types::scan::Scanner;
use futures::{StreamExt, TryStreamExt};
use session_core::{SessionId, SessionStore, StoreOptions};
use session_redis::RedisStore;

/// Of every this many sessions, one names the swept owner.
const ONE_IN: usize = 1000;
const OWNER: &str = "swept-owner";

/// Runs the measurement on the Redis at `url` and prints its table.
pub async fn run(url: &str, sessions: usize) -> Result<()> {
    let prefix = format!("sweep:{}:", &SessionId::generate().expose()[..8]);
    let pool = Pool::new(Config::from_url(url)?, None, None, None, 8)?;
    pool.init().await.context("connecting fred")?;
    eprintln!("owner-sweep: writing {sessions} Node sessions under {prefix}");
    let owned = seed(&pool, &prefix, sessions).await?;
    let store = RedisStore::builder()
        .url(url)
        .prefix(&prefix)
        .express_session()
        .owner_path("passport.user")
        .options(StoreOptions {
            timeout: Duration::from_secs(600),
            ..StoreOptions::default()
        })
        .connect()
        .await?;

    let floor = timed(|| walk(&pool, &prefix)).await?;
    ensure!(
        floor.1 == sessions,
        "the walk read {} of {sessions}",
        floor.1
    );
    // The first sweep also stamps every Node session with our metadata (a write each).
    let cold = timed(|| async { Ok(store.list_by_owner(OWNER).await?.len()) }).await?;
    let warm = timed(|| async { Ok(store.list_by_owner(OWNER).await?.len()) }).await?;
    let floor_again = timed(|| walk(&pool, &prefix)).await?;
    let destroyed = timed(|| async { Ok(store.destroy_by_owner(OWNER).await? as usize) }).await?;
    let left = store.list_by_owner(OWNER).await?.len();
    ensure!(
        cold.1 == owned && warm.1 == owned,
        "listed {cold:?}/{warm:?}, {owned} owned"
    );
    ensure!(
        destroyed.1 == owned && left == 0,
        "destroyed {destroyed:?}, {left} left"
    );
    let floor = floor.0.min(floor_again.0);

    println!("owner sweep over {sessions} Node sessions ({owned} of the swept owner):");
    println!("| operation | time | per session | vs SCAN+GET floor |");
    println!("|---|---|---|---|");
    for (name, took) in [
        ("SCAN + GET every key (floor)", floor),
        ("list_by_owner, first (stamps each)", cold.0),
        ("list_by_owner", warm.0),
        ("destroy_by_owner", destroyed.0),
    ] {
        println!(
            "| {name} | {took:.2?} | {:.1} us | {:.2}x |",
            took.as_secs_f64() * 1e6 / sessions as f64,
            took.as_secs_f64() / floor.as_secs_f64()
        );
    }
    let _: i64 = pool.del(keys(&pool, &prefix).await?).await.unwrap_or(0);
    Ok(())
}

async fn timed<F, Fut>(run: F) -> Result<(Duration, usize)>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let started = Instant::now();
    let n = run().await?;
    Ok((started.elapsed(), n))
}

/// Writes `sessions` values as connect-redis does; returns how many name [`OWNER`].
async fn seed(pool: &Pool, prefix: &str, sessions: usize) -> Result<usize> {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting a date")?;
    futures::stream::iter(0..sessions)
        .map(|i| {
            let owner = if i % ONE_IN == 0 {
                OWNER.to_owned()
            } else {
                format!("user-{i}")
            };
            let value = serde_json::json!({
                "cookie": {"originalMaxAge": 3_600_000, "expires": expires, "httpOnly": true, "path": "/"},
                "passport": {"user": owner},
                "cart": [{"sku": i, "qty": 1}],
            });
            let key = format!("{prefix}{}", SessionId::generate().expose());
            async move {
                pool.set::<(), _, _>(
                    key,
                    value.to_string(),
                    Some(Expiration::EX(3600)),
                    None,
                    false,
                )
                .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(sessions.div_ceil(ONE_IN))
}

async fn keys(pool: &Pool, prefix: &str) -> Result<Vec<String>> {
    let client = pool.next();
    let mut pages = client.scan(format!("{prefix}*"), Some(1000), None);
    let mut keys = Vec::new();
    while let Some(mut page) = pages.try_next().await? {
        if let Some(found) = page.take_results() {
            keys.extend(found.into_iter().filter_map(|k| k.into_string()));
        }
    }
    Ok(keys)
}

/// The floor: every key listed, then every value read, 64 reads in flight.
async fn walk(pool: &Pool, prefix: &str) -> Result<usize> {
    let keys = keys(pool, prefix).await?;
    let read: Vec<Option<String>> = futures::stream::iter(keys)
        .map(|key| async move { pool.get::<Option<String>, _>(key).await })
        .buffered(64)
        .try_collect()
        .await?;
    Ok(read.into_iter().flatten().count())
}
