//! A TCP proxy in the test's own process that misbehaves on command:
//!
//! - [`FaultProxy::arm`] loses one reply on purpose: the request reaches the server and
//!   runs, its reply never reaches the client, and the connection is closed, as when a
//!   connection drops after the server ran a command. toxiproxy's toxics act on every
//!   connection and byte alike; this one picks the request, so a test can say which
//!   command's reply is lost.
//! - [`FaultProxy::slow_down`] delays every byte from then on, so a store connected while it
//!   was fast now gets every answer after its timeout (the conformance suite's slow store).

use session_core::StoreOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy in front of one server; see the [module docs](self).
#[derive(Debug)]
pub struct FaultProxy {
    listen: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The byte strings a request must all contain to have its reply cut (one-shot).
    armed: Mutex<Option<Vec<Vec<u8>>>>,
    cuts: AtomicU64,
    /// How long each chunk waits before it is forwarded, in milliseconds.
    delay_ms: AtomicU64,
}

impl Shared {
    async fn pause(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Whether `request` is the armed one (disarming it).
    fn take_if_armed(&self, request: &[u8]) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let hit = armed
            .as_ref()
            .is_some_and(|patterns| patterns.iter().all(|p| contains(request, p)));
        if hit {
            *armed = None;
        }
        hit
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared::default());
        let upstream = upstream.to_owned();
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (shared, upstream) = (Arc::clone(&shared), upstream.clone());
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(&upstream).await {
                            forward(client, server, shared).await;
                        }
                    });
                }
            }
        });
        Ok(Self {
            listen,
            shared,
            task,
        })
    }

    /// The `host:port` clients connect to.
    pub fn listen(&self) -> &str {
        &self.listen
    }

    /// Loses the reply to the next request (one write of the client's) that contains every
    /// one of `patterns`.
    pub fn arm(&self, patterns: &[&[u8]]) {
        let patterns = patterns.iter().map(|p| p.to_vec()).collect();
        *self.shared.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(patterns);
    }

    /// How many replies were lost so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Delays every chunk of bytes, either way, by `delay` from now on.
    pub fn slow_down(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Lets the proxy run until the tokio runtime it started on ends, without a handle (for
    /// a harness that hands out only the store).
    pub fn run_in_background(self) {
        std::mem::forget(self);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes; after the armed request, drops the server's
/// next bytes and closes the connection.
async fn forward(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut_pending = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let upstream = {
        let (shared, cut_pending) = (Arc::clone(&shared), Arc::clone(&cut_pending));
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if shared.take_if_armed(&buffer[..n]) {
                    cut_pending.store(true, Ordering::SeqCst);
                }
                shared.pause().await;
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = {
        let shared = Arc::clone(&shared);
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let n = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if cut_pending.load(Ordering::SeqCst) {
                    shared.cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                shared.pause().await;
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    // Whichever side ends first ends the connection: both halves are dropped, so the client
    // sees it closed without the reply.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// A store (built by `connect` from the URL and the options it is given) whose server,
/// `url`'s, answers every call three times `options.timeout` late from the moment `connect`
/// returned: the conformance suite's
/// [`Harness::slow_store`](session_core::conformance::Harness::slow_store) for a network
/// backend.
///
/// `connect` sets the store up (connects, migrates, warms a connection) with the case's short
/// timeout while the proxy is still fast. On a loaded machine that setup alone can outlast
/// the timeout (CI saw a 400 ms `migrate` and `connect` time out at load 9), and a setup that
/// panics proves nothing about the store, so it gets up to five tries; the case's checks run
/// only once the proxy is slow.
pub async fn slow_store<S, F, Fut>(url: &str, options: StoreOptions, connect: F) -> S
where
    F: Fn(String, StoreOptions) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    use futures::FutureExt as _;
    let proxy = FaultProxy::start(crate::targets::host_port(url))
        .await
        .unwrap_or_else(|err| panic!("starting a proxy to {url}: {err}"));
    let proxied = crate::targets::with_host_port(url, proxy.listen());
    let timeout = options.timeout;
    let mut tries = 1;
    let store = loop {
        let setup = std::panic::AssertUnwindSafe(connect(proxied.clone(), options.clone()));
        match setup.catch_unwind().await {
            Ok(store) => break store,
            Err(panic) if tries >= 5 => std::panic::resume_unwind(panic),
            Err(_) => {
                eprintln!(
                    "slow_store: setting the store up with a {timeout:?} timeout failed \
                     (try {tries} of 5, machine too slow for it); trying again"
                );
                tries += 1;
            }
        }
    };
    proxy.slow_down(timeout * 3);
    proxy.run_in_background();
    store
}
