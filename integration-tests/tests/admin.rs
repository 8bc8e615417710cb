//! `session-admin` against the real servers: SQLite (a temp file), PostgreSQL, MySQL, Redis
//! and MongoDB (FerretDB). The memory store is left out: a CLI run and the test share no
//! memory store.
//!
//! The command line runs in-process through `session_admin::run` (arguments in, stdout and
//! stderr into buffers, the exit code back), the very function the binary's `main` calls:
//! an integration test can't name another package's binary (`CARGO_BIN_EXE_*` is only set
//! for the package's own), and a path guessed from the target dir may be stale or unbuilt.
//! The binary's own process-level behaviour (exit status, stdout) is tested in
//! session-admin/tests/binary.rs.
//!
//! Each backend gets a store no other test uses, named through the URL's own `session_*`
//! parameters (a Redis prefix, a SQL table, a MongoDB collection), as an operator would.

use std::collections::HashSet;
use std::time::Duration;

use integration_tests::{Backend, Skip, server_url};
use serde_json::Value;
use session_admin::{Exit, OpenOptions};
use session_core::conformance::skip;
use session_core::{Record, SessionId, SessionStore, now};

/// A name no other store in this run or an earlier one uses.
fn name() -> String {
    integration_tests::unique_name("adm")
}

/// `url` with `params` added to its query.
fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// `url` with its password (or user info) replaced by `user:password`.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (user, host) = match rest.split_once('@') {
        Some((info, host)) => (info.split(':').next().unwrap_or(""), host),
        None => ("sessions", rest),
    };
    format!("{scheme}://{user}:{password}@{host}")
}

/// One `session-admin` run: exit code, stdout, stderr.
struct Run {
    exit: Exit,
    out: String,
    err: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.out, self.err)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", self.out))
    }
}

async fn admin(url: &str, args: &[&str]) -> Run {
    let mut argv = vec!["session-admin", "--url", url, "--timeout", "20s"];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = session_admin::run(argv, &mut out, &mut err).await;
    Run {
        exit,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// Runs `args` with `--json`, expecting exit `exit`; its document.
async fn json(url: &str, args: &[&str], exit: Exit) -> Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let run = admin(url, &with_json).await;
    assert_eq!(run.exit, exit, "{args:?}: {}", run.all());
    run.json()
}

/// A session of `owner` holding a token (so a test can see whether values are printed).
fn session(owner: &str, ttl: time::Duration) -> Record {
    let mut record = Record::new(now() + ttl);
    record.insert("user", owner).unwrap();
    record
        .insert(
            "token",
            format!("tok-{}", &SessionId::generate().expose()[..16]),
        )
        .unwrap();
    record.insert("visits", 3).unwrap();
    record.set_owner(Some(owner.to_owned()));
    record
}

fn fingerprints(listed: &Value) -> HashSet<String> {
    listed["sessions"]
        .as_array()
        .expect("a list of sessions")
        .iter()
        .map(|s| s["session"].as_str().unwrap().to_owned())
        .collect()
}

/// Every command on one store, `url` naming a store no one else uses. `purges`: whether
/// the backend keeps expired records until purged. Returns the one session left.
async fn scenario(backend: &str, url: &str, purges: bool) -> SessionId {
    // The test's own handle, opened as an application would (the table created), without
    // MongoDB's background pruning, which would take the purge's work.
    let opened = OpenOptions::new()
        .mongo_pruning(None)
        .open(url)
        .await
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
    assert_eq!(opened.backend, backend);
    let store = opened.store;
    let mut alice = Vec::new();
    let mut bob = Vec::new();
    for i in 0..5 {
        let (owner, mine) = if i < 3 {
            ("alice", &mut alice)
        } else {
            ("bob", &mut bob)
        };
        let mut record = session(owner, time::Duration::hours(i + 1));
        if i == 0 || i == 3 {
            // Ids may start with `-`: `show` and `revoke` must not take one for an option.
            let id = format!("-{}", &SessionId::generate().expose()[1..]);
            record.set_id(SessionId::parse(&id).unwrap());
        }
        store.create(&mut record).await.unwrap();
        mine.push(record);
    }
    let all: Vec<&Record> = alice.iter().chain(&bob).collect();
    let ids: Vec<&str> = all.iter().map(|r| r.id().expose()).collect();

    // count, in both renderings.
    let counted = json(url, &["count"], Exit::Ok).await;
    assert_eq!(counted["sessions"], 5, "{backend}: {counted}");
    assert_eq!(counted["backend"], backend);
    let table = admin(url, &["count"]).await;
    assert_eq!(table.exit, Exit::Ok, "{}", table.all());
    assert!(
        table
            .out
            .lines()
            .any(|l| l.starts_with("sessions") && l.ends_with(" 5")),
        "{backend}: {}",
        table.out
    );

    // list: fingerprints, never ids unless asked.
    let listed = json(url, &["list", "--owner", "alice"], Exit::Ok).await;
    let expected: HashSet<String> = alice
        .iter()
        .map(|r| r.id().fingerprint().to_string())
        .collect();
    assert_eq!(fingerprints(&listed), expected, "{backend}: {listed}");
    for run in [
        admin(url, &["list", "--owner", "alice"]).await,
        admin(url, &["list"]).await,
        admin(url, &["--json", "list"]).await,
    ] {
        assert_eq!(run.exit, Exit::Ok, "{}", run.all());
        for id in &ids {
            assert!(!run.all().contains(id), "{backend}: a list printed an id");
        }
        for record in &alice {
            assert!(run.out.contains(&record.id().fingerprint().to_string()));
        }
    }
    let everyone = json(url, &["list"], Exit::Ok).await;
    assert_eq!(everyone["sessions"].as_array().unwrap().len(), 5);
    for listed in everyone["sessions"].as_array().unwrap() {
        let record = all
            .iter()
            .find(|r| r.id().fingerprint().to_string() == listed["session"])
            .expect("a listed session is one of ours");
        let bytes = serde_json::to_vec(record.data()).unwrap().len();
        assert_eq!(listed["bytes"], bytes, "{backend}: {listed}");
        assert_eq!(listed["owner"], record.owner().unwrap());
    }
    let shown = admin(url, &["list", "--owner", "alice", "--show-ids"]).await;
    for record in &alice {
        assert!(
            shown.out.contains(record.id().expose()),
            "{backend}: {}",
            shown.out
        );
    }

    // show: redacted unless --reveal.
    let target = &alice[0];
    let token: String = target.get("token").unwrap().unwrap();
    let id = target.id().expose();
    for run in [
        admin(url, &["show", id]).await,
        admin(url, &["--json", "show", id]).await,
    ] {
        assert_eq!(run.exit, Exit::Ok, "{}", run.all());
        assert!(
            !run.all().contains(&token),
            "{backend}: show printed a value"
        );
        assert!(run.out.contains("token") && run.out.contains("string"));
        assert!(!run.all().contains(id), "{backend}: show printed the id");
    }
    let redacted = json(url, &["show", id], Exit::Ok).await;
    assert_eq!(
        redacted["data"]["token"],
        serde_json::json!({"type": "string", "bytes": token.len()})
    );
    assert_eq!(redacted["owner"], "alice");
    let revealed = json(url, &["show", id, "--reveal"], Exit::Ok).await;
    assert_eq!(revealed["data"]["token"], token.as_str());
    assert!(
        admin(url, &["show", id, "--reveal"])
            .await
            .out
            .contains(&token)
    );
    let missing = SessionId::generate();
    let run = admin(url, &["show", missing.expose()]).await;
    assert_eq!(run.exit, Exit::NotFound, "{}", run.all());
    assert!(
        run.err.contains(&missing.fingerprint().to_string()),
        "{}",
        run.err
    );

    // stats: the buckets add up to the count.
    let stats = json(url, &["stats"], Exit::Ok).await;
    assert_eq!(stats["sessions"], 5, "{backend}: {stats}");
    assert_eq!(stats["corrupt"], 0);
    assert_eq!(stats["owners"], 2);
    let sum = |key: &str| {
        stats[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["sessions"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("sizes"), 5, "{stats}");
    assert_eq!(sum("expires_in_hours"), 5, "{stats}");
    // Sessions expire 1 to 5 hours from their creation: hours 0 to 4 from now.
    let hours: Vec<i64> = stats["expires_in_hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["from"].as_i64().unwrap())
        .collect();
    assert_eq!(hours, [0, 1, 2, 3, 4], "{stats}");
    assert_eq!(admin(url, &["stats"]).await.exit, Exit::Ok);

    // revoke one, then an owner's.
    let run = admin(url, &["revoke", bob[0].id().expose()]).await;
    assert_eq!(run.exit, Exit::Ok, "{}", run.all());
    assert!(store.get(bob[0].id()).await.unwrap().is_none());
    assert!(store.get(bob[1].id()).await.unwrap().is_some());
    let again = admin(url, &["revoke", bob[0].id().expose()]).await;
    assert_eq!(again.exit, Exit::NotFound, "{}", again.all());
    let revoked = json(url, &["revoke", "--owner", "alice"], Exit::Ok).await;
    assert_eq!(revoked["revoked"], 3, "{backend}: {revoked}");
    assert!(store.list_by_owner("alice").await.unwrap().is_empty());
    assert_eq!(json(url, &["count"], Exit::Ok).await["sessions"], 1);

    // purge: expired records go where the backend keeps them.
    let mut expired = Vec::new();
    for _ in 0..3 {
        let mut record = session("carol", time::Duration::milliseconds(150));
        store.create(&mut record).await.unwrap();
        expired.push(record);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let purged = json(url, &["purge", "--batch", "2"], Exit::Ok).await;
    if purges {
        assert_eq!(purged["purged"], 3, "{backend}: {purged}");
        assert_eq!(purged["batches"], 2, "{backend}: {purged}");
        assert_eq!(json(url, &["purge"], Exit::Ok).await["purged"], 0);
        assert_eq!(store.delete_expired().await.unwrap(), 0, "{backend}");
    } else {
        assert_eq!(purged["expires_by_itself"], true, "{backend}: {purged}");
        let run = admin(url, &["purge"]).await;
        assert!(run.out.contains("by itself"), "{}", run.out);
    }
    assert_eq!(json(url, &["count"], Exit::Ok).await["sessions"], 1);
    assert!(store.get(bob[1].id()).await.unwrap().is_some());
    bob[1].id().clone()
}

/// A wrong password is never printed, in any rendering of the error; neither is a right
/// one in a successful run.
async fn passwords_stay_hidden(url: &str, wrong_fails: bool) {
    let password = "Wr0ng-4dm1n-Passw0rd";
    let wrong = with_password(url, password);
    for args in [&["count"][..], &["--json", "count"], &["--json", "stats"]] {
        let run = admin(&wrong, args).await;
        assert!(
            !run.all().contains(password),
            "{args:?} printed it: {}",
            run.all()
        );
        assert!(
            !run.all().contains("4dm1n"),
            "{args:?} printed a part: {}",
            run.all()
        );
        if wrong_fails {
            assert_eq!(run.exit, Exit::Failed, "{args:?}: {}", run.all());
            assert!(run.err.contains("session-admin: error:"), "{}", run.err);
            if args.contains(&"--json") {
                assert_eq!(run.json()["error"]["exit"], 1);
            }
        } else {
            assert!(run.all().contains("***"), "{}", run.all());
        }
    }
}

fn server(backend: Backend, test: &str) -> Option<String> {
    match server_url(backend) {
        Ok(url) => Some(url),
        Err(Skip(reason)) => {
            skip(test, &reason);
            None
        }
    }
}

#[tokio::test]
async fn sqlite() {
    let url = integration_tests::sqlite_test_url("admin");
    let left = scenario("sqlite", &url, true).await;

    // A record that no longer decodes: stats and show say so with exit 4, revoke removes it.
    let raw = session_sqlite::SqliteStore::builder()
        .connect(&url)
        .await
        .unwrap();
    session_sqlite::sqlx::query("UPDATE sessions SET data = '[1,2]' WHERE id = ?1")
        .bind(left.expose())
        .execute(raw.pool())
        .await
        .unwrap();
    let stats = json(&url, &["stats"], Exit::Corrupt).await;
    assert_eq!(
        (&stats["corrupt"], &stats["sessions"]),
        (&1.into(), &0.into()),
        "{stats}"
    );
    assert!(admin(&url, &["stats"]).await.out.contains("did not decode"));
    assert_eq!(json(&url, &["list"], Exit::Corrupt).await["corrupt"], 1);
    let run = admin(&url, &["show", left.expose()]).await;
    assert_eq!(run.exit, Exit::Corrupt, "{}", run.all());
    assert!(
        run.err.contains(&left.fingerprint().to_string()),
        "{}",
        run.err
    );
    assert_eq!(admin(&url, &["revoke", left.expose()]).await.exit, Exit::Ok);
    assert_eq!(json(&url, &["stats"], Exit::Ok).await["corrupt"], 0);
}

#[tokio::test]
async fn postgres() {
    let Some(url) = server(Backend::Postgres, "session-admin on PostgreSQL") else {
        return;
    };
    let table = name();
    let url = with_params(
        &url,
        &format!("session_schema=admin_tests&session_table={table}"),
    );
    scenario("postgresql", &url, true).await;
    passwords_stay_hidden(&url, true).await;
}

#[tokio::test]
async fn mysql() {
    let Some(url) = server(Backend::Mysql, "session-admin on MySQL") else {
        return;
    };
    let url = with_params(&url, &format!("session_table={}", name()));
    scenario("mysql", &url, true).await;
    passwords_stay_hidden(&url, true).await;
}

#[tokio::test]
async fn redis() {
    let Some(url) = server(Backend::Redis, "session-admin on Redis") else {
        return;
    };
    let url = with_params(&url, &format!("session_prefix={}:", name()));
    scenario("redis", &url, false).await;
    passwords_stay_hidden(&url, true).await;
    // The shared server's default user takes any password: a run that succeeds with one
    // shows the URL masked.
    let password = "Any-Pw-Redis-58";
    let with_any = url.replacen("redis://", &format!("redis://:{password}@"), 1);
    for args in [&["count"][..], &["--json", "stats"], &["--json", "purge"]] {
        let run = admin(&with_any, args).await;
        assert_eq!(run.exit, Exit::Ok, "{args:?}: {}", run.all());
        assert!(!run.all().contains(password), "{args:?}: {}", run.all());
        assert!(run.out.contains("redis://:***@"), "{args:?}: {}", run.out);
    }
}

#[tokio::test]
async fn mongo() {
    let Some(url) = server(Backend::Mongo, "session-admin on MongoDB") else {
        return;
    };
    let database = integration_tests::mongo_test_database(&url, "session_admin").await;
    let url = with_params(
        &url,
        &format!("session_database={database}&session_collection={}", name()),
    );
    scenario("mongodb", &url, true).await;
    passwords_stay_hidden(&url, true).await;
}

/// Usage errors: a malformed id, a missing URL, an unknown scheme. No server needed.
#[tokio::test]
async fn usage_errors_exit_2_and_say_why() {
    let url = integration_tests::sqlite_test_url("admin-usage");
    OpenOptions::new().open(&url).await.unwrap();
    for args in [&["show", "not-an-id!"][..], &["revoke", "short"]] {
        let run = admin(&url, args).await;
        assert_eq!(run.exit, Exit::Usage, "{args:?}: {}", run.all());
        assert!(
            run.err.contains("the ID argument is not a session id"),
            "{}",
            run.err
        );
        assert!(!run.all().contains(args[1]), "the malformed id was echoed");
    }
    let run = admin(&url, &["--json", "show", "x"]).await;
    assert_eq!(run.json()["error"]["exit"], 2);

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = session_admin::run(["session-admin", "count"], &mut out, &mut err).await;
    assert_eq!(exit, Exit::Usage);
    assert!(String::from_utf8_lossy(&err).contains("SESSION_ADMIN_URL"));

    let run = admin("memcached://u:Hidden-Pw-9@cache", &["count"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}", run.all());
    assert!(run.err.contains("memcached") && !run.all().contains("Hidden-Pw-9"));
    let run = admin("redis://:Hidden-Pw-9@cache?session_tabel=x", &["count"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}", run.all());
    assert!(run.err.contains("session_tabel") && !run.all().contains("Hidden-Pw-9"));

    // clap's own errors are 2 as well; --help is 0 and lists the exit codes.
    assert_eq!(admin(&url, &["frobnicate"]).await.exit, Exit::Usage);
    assert_eq!(admin(&url, &["revoke"]).await.exit, Exit::Usage);
    let help = admin(&url, &["--help"]).await;
    assert_eq!(help.exit, Exit::Ok);
    assert!(help.out.contains("Exit codes:") && help.out.contains("4  corrupt"));

    // A SQLite file that isn't there is refused, not created empty.
    let absent = integration_tests::sqlite_test_url("admin-absent");
    let run = admin(&absent, &["count"]).await;
    assert_eq!(run.exit, Exit::Usage, "{}", run.all());
    let path = absent.trim_start_matches("sqlite://");
    assert!(!std::path::Path::new(path).exists());
}

/// `migrate` from SQLite to PostgreSQL by URL: a dry run writes nothing, the copy takes
/// every live session (not the expired one) and verifies, a second run with the finished
/// checkpoint refuses, a store that doesn't decode is refused with exit 4, the password is
/// never printed.
#[tokio::test]
async fn migrate_by_url() {
    let Some(postgres) = server(Backend::Postgres, "session-admin migrate to PostgreSQL") else {
        return;
    };
    let from = integration_tests::sqlite_test_url("admin-migrate");
    let source = OpenOptions::new().open(&from).await.unwrap().store;
    let mut ids = Vec::new();
    for owner in ["ann", "bob", "cy"] {
        let mut record = session(owner, time::Duration::hours(1));
        source.create(&mut record).await.unwrap();
        ids.push(record.id().clone());
    }
    let mut expiring = session("dee", time::Duration::milliseconds(300));
    source.create(&mut expiring).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let to = with_params(
        &with_password(&postgres, "sessions"),
        &format!("session_schema=admin_tests&session_table={}", name()),
    );
    let checkpoint = std::env::temp_dir().join(format!("{}.json", name()));
    let run = |extra: &'static [&'static str]| {
        let (from, to, checkpoint) = (from.clone(), to.clone(), checkpoint.clone());
        async move {
            let checkpoint = checkpoint.display().to_string();
            let mut argv = vec![
                "session-admin",
                "--json",
                "migrate",
                "--from",
                &from,
                "--to",
                &to,
            ];
            argv.extend(["--checkpoint", &checkpoint]);
            argv.extend_from_slice(extra);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let exit = session_admin::run(argv, &mut out, &mut err).await;
            (
                exit,
                String::from_utf8(out).unwrap() + &String::from_utf8(err).unwrap(),
            )
        }
    };

    let (exit, dry) = run(&["--dry-run"]).await;
    assert_eq!(exit, Exit::Ok, "{dry}");
    let dry: Value = serde_json::from_str(dry.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&dry["scanned"], &dry["copied"]),
        (&3.into(), &0.into()),
        "{dry}"
    );
    std::fs::remove_file(&checkpoint).unwrap();

    let (exit, output) = run(&[]).await;
    assert_eq!(exit, Exit::Ok, "{output}");
    assert!(
        !output.contains(":sessions@"),
        "a password was printed: {output}"
    );
    let done: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&done["copied"], &done["complete"]),
        (&3.into(), &true.into()),
        "{done}"
    );
    assert_eq!(done["verification"]["passed"], true, "{done}");
    let target = OpenOptions::inspect().open(&to).await.unwrap().store;
    for id in &ids {
        assert_eq!(
            target.get(id).await.unwrap(),
            source.get(id).await.unwrap(),
            "a session differs after the copy"
        );
    }
    assert!(
        target.get(expiring.id()).await.unwrap().is_none(),
        "an expired session was copied"
    );

    let (exit, again) = run(&[]).await;
    assert_eq!(
        exit,
        Exit::Usage,
        "a finished checkpoint must refuse: {again}"
    );
    assert!(again.contains("finished migration"), "{again}");
    std::fs::remove_file(&checkpoint).unwrap();

    // A source whose records don't decode (here: every row's data overwritten).
    let raw = session_sqlite::SqliteStore::builder()
        .connect(&from)
        .await
        .unwrap();
    session_sqlite::sqlx::query("UPDATE sessions SET data = '[1,2]'")
        .execute(raw.pool())
        .await
        .unwrap();
    let (exit, refused) = run(&[]).await;
    assert_eq!(exit, Exit::Corrupt, "{refused}");
    assert!(refused.contains("another format"), "{refused}");
    std::fs::remove_file(&checkpoint).ok();
}
