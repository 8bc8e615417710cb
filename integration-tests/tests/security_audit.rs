//! Security audit: fails when a session id gets weaker, a signature check stops being
//! constant-time, a `Debug`/`Display` shows a secret, or the adapters' cookies default to
//! anything weaker than HttpOnly + Secure + SameSite=Lax.
//!
//! Cookie signatures:
//! - `session_core::SignedCookie` (express-session's `s:<id>.<sig>`) checks with `hmac`'s
//!   `verify_slice` (constant-time through `subtle`); asserted on its source below.
//! - The demo's `sid` cookie goes through axum-extra's `SignedCookieJar`, i.e. the `cookie`
//!   crate's signed jar, which verifies its HMAC-SHA256 with `verify_slice` as well.
//! - The actix adapter's cookie is actix-session's (private, AEAD-encrypted by default with
//!   the app's `Key`); the tower adapter's cookie holds the random 192-bit id itself.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

use std::collections::HashSet;
use std::sync::Arc;

use integration_tests::{Backend, server_url};
use session_core::conformance::skip;
use session_core::{
    CorruptPolicy, Error, Record, SessionId, SessionStore, SignedCookie, StoreOptions, now,
};
use session_encrypted::{EncryptedStore, EncryptionKey};
use session_memory::{CachedStore, MemoryStore};

// ---------------------------------------------------------------------------------------
// Ids

/// 32 base64url characters carry 32 × 6 = 192 bits: 24 random bytes, no padding bits.
#[test]
fn generated_ids_carry_at_least_128_bits() {
    const DRAWS: usize = 1_000_000;
    let alphabet: HashSet<u8> = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        .iter()
        .copied()
        .collect();
    assert_eq!(alphabet.len(), 64);
    let bits_per_char = (alphabet.len() as f64).log2();

    let mut seen = HashSet::with_capacity(DRAWS);
    let mut counts = [0u64; 256];
    for _ in 0..DRAWS {
        let id = SessionId::generate();
        let text = id.expose();
        let bits = text.len() as f64 * bits_per_char;
        assert!(
            bits >= 128.0,
            "an id of {} characters carries {bits} bits",
            text.len()
        );
        assert_eq!(
            text.len(),
            32,
            "generated ids are 24 bytes as 32 base64url characters"
        );
        for b in text.bytes() {
            assert!(alphabet.contains(&b), "{:?} outside base64url", b as char);
            counts[usize::from(b)] += 1;
        }
        assert!(
            seen.insert(id),
            "a generated id repeated within {DRAWS} draws"
        );
    }
    // The characters are uniform: a biased or truncated random source shows here. Each of
    // the 64 symbols is expected 500,000 times; ±2% is over 20 standard deviations.
    let expected = (DRAWS * 32 / 64) as f64;
    for symbol in &alphabet {
        let n = counts[usize::from(*symbol)];
        let off = (n as f64 - expected).abs() / expected;
        assert!(off < 0.02, "symbol {:?} appears {n} times", *symbol as char);
    }

    // And the source says where they come from: 24 bytes from the OS CSPRNG.
    let source = include_str!("../../session-core/src/id.rs");
    assert!(source.contains("const GENERATED_BYTES: usize = 24;"));
    assert!(source.contains("getrandom::fill(&mut bytes)"));
    // Parsed ids are at least 22 characters: 132 bits.
    assert!(session_core::MIN_ID_LEN as f64 * bits_per_char >= 128.0);
}

// ---------------------------------------------------------------------------------------
// Constant-time signature checks

/// The non-test part of a source file.
fn production_code(source: &str) -> &str {
    source.split("#[cfg(test)]").next().unwrap()
}

#[test]
fn cookie_signatures_are_checked_in_constant_time() {
    let source = production_code(include_str!("../../session-core/src/signed_cookie.rs"));
    let verify = source
        .split("pub fn verify(")
        .nth(1)
        .expect("SignedCookie::verify exists");
    let verify = &verify[..verify.find("\n    }\n").expect("the end of verify")];
    assert!(
        verify.contains(".verify_slice("),
        "SignedCookie::verify must compare with hmac's constant-time verify_slice:\n{verify}"
    );
    for line in source.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let code = line.to_ascii_lowercase();
        let about_signatures = ["signature", "mac", "tag", "digest", "finalize"]
            .iter()
            .any(|word| code.contains(word));
        if about_signatures {
            for comparison in ["==", "!=", ".eq(", ".ne(", "memcmp", "starts_with("] {
                assert!(
                    !code.contains(comparison),
                    "a signature compared with `{comparison}` (not constant-time): {line}"
                );
            }
        }
    }
    // Behaviour: a one-character change of the signature is refused.
    let cookies = SignedCookie::new(["audit secret"]).unwrap();
    let id = SessionId::generate();
    let signed = cookies.sign(&id);
    let mut forged = signed.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(cookies.verify(&String::from_utf8(forged).unwrap()), None);
    assert_eq!(cookies.verify(&signed), Some(id));

    // The demo signs its cookie with the cookie crate's signed jar (HMAC-SHA256, verified
    // with verify_slice), never by hand.
    let demo = production_code(include_str!("../../session-demo/src/lib.rs"));
    assert!(
        demo.contains("SignedCookieJar"),
        "the demo's cookie must be signed"
    );
    assert!(!demo.contains("PlainCookieJar") && !demo.contains("CookieJar;"));
}

// ---------------------------------------------------------------------------------------
// Debug and Display show no secret

const SECRET_VALUE: &str = "s3cret-session-value-9d2f";

/// Fails naming the type when `shown` contains any of `secrets`.
fn assert_hides(what: &str, shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !shown.contains(secret),
            "{what} shows a secret ({secret:?}) in: {shown}"
        );
    }
}

fn secret_record() -> Record {
    let mut record = Record::new(now() + time::Duration::hours(1));
    record.insert("token", SECRET_VALUE).unwrap();
    record
}

/// The user and password in a URL like `scheme://user:password@host/...`.
fn credentials(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let (user, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_types_show_no_secret() {
    let record = secret_record();
    let id = record.id().expose().to_owned();
    let secrets = [SECRET_VALUE, id.as_str()];

    assert_hides("Record", &format!("{record:?}"), &secrets);
    assert_hides("SessionId", &format!("{:?}", record.id()), &secrets);
    assert_hides(
        "Fingerprint",
        &format!(
            "{} {:?}",
            record.id().fingerprint(),
            record.id().fingerprint()
        ),
        &secrets,
    );
    for err in [
        Error::decode(record.id(), "bad"),
        Error::Conflict {
            id: record.id().clone(),
        },
        Error::PayloadTooLarge {
            id: record.id().clone(),
            size: 2,
            max: 1,
        },
    ] {
        assert_hides("Error (Display)", &err.to_string(), &secrets);
        assert_hides("Error (Debug)", &format!("{err:?}"), &secrets);
    }

    let cookie_secret = "cookie-signing-secret-4b1e";
    let cookies = SignedCookie::new([cookie_secret, "older-secret-0a9c"]).unwrap();
    assert_hides(
        "SignedCookie",
        &format!("{cookies:?}"),
        &[cookie_secret, "older-secret-0a9c"],
    );

    let options = StoreOptions {
        corrupt: CorruptPolicy::TreatAsMissing,
        ..StoreOptions::default()
    };
    assert_hides("StoreOptions", &format!("{options:?}"), &secrets);

    // Stores holding the secret session.
    let memory = MemoryStore::builder().options(options).build();
    memory.create(&mut record.clone()).await.unwrap();
    assert_hides("MemoryStore", &format!("{memory:?}"), &secrets);
    let cached = CachedStore::builder(memory.clone()).build();
    cached.get(record.id()).await.unwrap();
    assert_hides("CachedStore", &format!("{cached:?}"), &secrets);

    // Encryption keys: neither raw (hex, decimal list) nor base64.
    let key_bytes = [0xC3_u8; 32];
    let key = EncryptionKey::from_bytes(&key_bytes).unwrap();
    let encrypted = EncryptedStore::new(memory.clone(), vec![key.clone()]).unwrap();
    encrypted.create(&mut record.clone()).await.unwrap();
    let key_forms = [
        "c3c3c3c3".to_owned(),
        "C3C3C3C3".to_owned(),
        "195, 195".to_owned(),
        "w8PDw8PD".to_owned(), // base64 of 0xC3 bytes
    ];
    let key_forms: Vec<&str> = key_forms.iter().map(String::as_str).collect();
    for (what, shown) in [
        ("EncryptionKey", format!("{key:?}")),
        ("KeyId", format!("{} {:?}", key.id(), key.id())),
        ("EncryptedStore", format!("{encrypted:?}")),
    ] {
        assert_hides(what, &shown, &key_forms);
        assert_hides(what, &shown, &secrets);
    }

    // The adapters' stores.
    let tower = session_tower::TowerStore::new(encrypted.clone()).with_owner_key("user");
    assert_hides("TowerStore", &format!("{tower:?}"), &secrets);
    assert_hides("TowerStore", &format!("{tower:?}"), &key_forms);
    let actix = session_actix::ActixStore::new(memory.clone());
    assert_hides("ActixStore", &format!("{actix:?}"), &secrets);
}

/// Redis: a URL with a password. Redis's `default` user without a password accepts any
/// password, so the store connects; the builder is checked either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_and_builder_show_no_password() {
    const PASSWORD: &str = "s3cretpass-r3d1s";
    let base = match server_url(Backend::Redis) {
        Ok(url) => url,
        Err(missing) => return skip("redis", &missing.0),
    };
    let mut secrets = vec![PASSWORD.to_owned()];
    if let Some((_, password)) = credentials(&base) {
        secrets.push(password);
    }
    let host = base.split_once("://").unwrap().1;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let url = format!("redis://default:{PASSWORD}@{host}");
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();

    let builder = session_redis::RedisStore::builder()
        .url(&url)
        .prefix("audit:");
    assert_hides("RedisStoreBuilder", &format!("{builder:?}"), &secrets);
    match builder.connect().await {
        Ok(store) => {
            let mut record = secret_record();
            store.create(&mut record).await.unwrap();
            assert_hides("RedisStore", &format!("{store:?}"), &secrets);
            assert_hides("RedisStore", &format!("{store:?}"), &[SECRET_VALUE]);
            store.destroy(record.id()).await.unwrap();
        }
        Err(err) => {
            eprintln!("the password URL did not connect ({err}); checked the builder only");
            assert_hides("redis connect error", &err.to_string(), &secrets);
            assert_hides("redis connect error", &format!("{err:?}"), &secrets);
        }
    }
}

/// PostgreSQL: the real password from the test URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_shows_no_password() {
    let url = match server_url(Backend::Postgres) {
        Ok(url) => url,
        Err(missing) => return skip("postgres", &missing.0),
    };
    let Some((_, password)) = credentials(&url) else {
        return skip("postgres", "the test URL has no password");
    };
    // Table and schema names that can't contain the password by chance.
    let builder = session_postgres::PostgresStore::builder()
        .schema("audit_schema")
        .table("audit_t");
    assert_hides(
        "PostgresStoreBuilder",
        &format!("{builder:?}"),
        &[&password],
    );
    let store = builder.connect(&url).await.unwrap();
    assert_hides("PostgresStore", &format!("{store:?}"), &[&password, &url]);
    let lazy = session_postgres::PostgresStore::builder()
        .schema("audit_schema")
        .table("audit_t")
        .connect_lazy(&url)
        .unwrap();
    assert_hides("PostgresStore (lazy)", &format!("{lazy:?}"), &[&password]);
    // A bad password's error shows neither.
    let wrong = url.replacen(&format!(":{password}@"), ":WrongPass-55e1@", 1);
    if let Err(err) = session_postgres::PostgresStore::builder()
        .connect(&wrong)
        .await
    {
        assert_hides(
            "postgres connect error",
            &err.to_string(),
            &["WrongPass-55e1"],
        );
        assert_hides(
            "postgres connect error",
            &format!("{err:?}"),
            &["WrongPass-55e1"],
        );
    }
}

/// MongoDB: a URL with a password (the test server may not check it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_shows_no_password() {
    const PASSWORD: &str = "m0ngo-s3cret-77ab";
    let base = match server_url(Backend::Mongo) {
        Ok(url) => url,
        Err(missing) => return skip("mongo", &missing.0),
    };
    let host = base.split_once("://").unwrap().1;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let url = format!("mongodb://audit:{PASSWORD}@{host}");
    let config = session_mongo::MongoConfig {
        database: Some("session_audit".into()),
        collection: Some("audit".into()),
        expiry: session_mongo::ExpiryMode::Disabled,
        ..session_mongo::MongoConfig::default()
    };
    assert_hides("MongoConfig", &format!("{config:?}"), &[PASSWORD]);
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        session_mongo::MongoStore::connect(&url, config),
    )
    .await;
    match connected {
        Ok(Ok(store)) => assert_hides("MongoStore", &format!("{store:?}"), &[PASSWORD, &url]),
        Ok(Err(err)) => {
            eprintln!("the password URL did not connect ({err}); checked the error");
            assert_hides("mongo connect error", &err.to_string(), &[PASSWORD]);
            assert_hides("mongo connect error", &format!("{err:?}"), &[PASSWORD]);
        }
        Err(_) => eprintln!("the password URL did not answer; checked the config only"),
    }
}

// ---------------------------------------------------------------------------------------
// Cookie defaults of the adapters (tests/adapters.rs checks the same through its full apps)

/// The session cookie's attributes, lower-cased, from a response of `base` + `/visit`.
async fn cookie_attributes(base: &str) -> (String, Vec<String>) {
    let response = reqwest::get(format!("{base}/visit")).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let header = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("id="))
        .expect("a session cookie is set");
    let attributes = header
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    (header, attributes)
}

fn assert_strong(adapter: &str, header: &str, attributes: &[String]) {
    for wanted in ["httponly", "secure", "samesite=lax"] {
        assert!(
            attributes.iter().any(|a| a == wanted),
            "{adapter}: {wanted} missing by default in {header}"
        );
    }
    assert!(
        !attributes.iter().any(|a| a == "samesite=none"),
        "{adapter}: {header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_cookies_default_to_http_only_secure_lax() {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());

    // tower-sessions through session_tower::secure_layer, untouched.
    let tower = {
        use axum::Router;
        use axum::routing::get;
        use session_tower::{Session, TowerStore};
        async fn visit(session: Session) -> &'static str {
            session.insert("visits", 1).await.unwrap();
            "ok"
        }
        let layer = session_tower::secure_layer(TowerStore::new(store.clone()));
        let app = Router::new().route("/visit", get(visit)).layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    };
    let (header, attributes) = cookie_attributes(&tower).await;
    assert_strong("session_tower::secure_layer", &header, &attributes);

    // actix-session through session_actix::secure_middleware, untouched.
    let actix = {
        use actix_web::cookie::Key;
        use actix_web::{App, HttpServer, web};
        use session_actix::{ActixStore, Session};
        async fn visit(session: Session) -> actix_web::Result<&'static str> {
            session.insert("visits", 1)?;
            Ok("ok")
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let store = store.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let key = Key::generate();
                let server = HttpServer::new(move || {
                    App::new()
                        .wrap(
                            session_actix::secure_middleware(
                                ActixStore::new(store.clone()),
                                key.clone(),
                            )
                            .build(),
                        )
                        .route("/visit", web::get().to(visit))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .unwrap();
                tx.send(server.addrs()[0]).unwrap();
                server.run().await
            })
        });
        format!("http://{}", rx.recv().unwrap())
    };
    let (header, attributes) = cookie_attributes(&actix).await;
    assert_strong("session_actix::secure_middleware", &header, &attributes);
}
