//! A TCP proxy in the test's own process that misbehaves on command. toxiproxy's toxics act
//! on every connection and byte alike; this one can pick the request whose reply it spoils,
//! so a test can say which command's reply went missing.
//!
//! - [`FaultProxy::arm`] loses one reply: the request reaches the server and runs, its reply
//!   never reaches the client, and the connection is closed, as when a connection drops
//!   after the server ran a command.
//! - [`FaultProxy::arm_hold`] holds back every reply of one connection from the armed
//!   request on (the server ran it, the client waits), until [`FaultProxy::reset_held`]
//!   breaks that connection.
//! - [`FaultProxy::pause`] leaves the server's bytes unread on every connection (they wait
//!   in the kernel's buffers) until it is lifted; [`FaultProxy::sever`] cuts every
//!   connection for good and refuses new ones (a replication link that never comes back).
//! - [`FaultProxy::slow_down`] delays every byte from then on, so a store connected while it
//!   was fast now gets every answer after its timeout (the conformance suite's slow store).
//!
//! A connection the proxy ends is reset (RST), never closed in order: it looks like one that
//! broke.

use session_core::StoreOptions;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A proxy in front of one server; see the [module docs](self).
#[derive(Debug)]
pub struct FaultProxy {
    listen: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What befalls the replies of a connection once its armed request has passed.
const FORWARD: u8 = 0;
/// The next reply is dropped and the connection reset ([`FaultProxy::arm`]).
const LOSE: u8 = 1;
/// Every reply is read and dropped until [`FaultProxy::reset_held`] ([`FaultProxy::arm_hold`]).
const HOLD: u8 = 2;

#[derive(Debug, Default)]
struct Shared {
    /// The byte strings a request must all contain, and its connection's fate (one-shot).
    armed: Mutex<Option<(Vec<Vec<u8>>, u8)>>,
    cuts: AtomicU64,
    /// How long each chunk waits before it is forwarded, in milliseconds.
    delay_ms: AtomicU64,
    /// Whether some connection's replies are held.
    holding: AtomicBool,
    /// Set by [`FaultProxy::reset_held`] until the held connection has seen it.
    reset: AtomicBool,
    paused: AtomicBool,
    severed: AtomicBool,
    /// Woken on every change of the switches above, so no connection waits in a read.
    changed: Notify,
}

impl Shared {
    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// The fate of the connection that sent `request`, when it is the armed one
    /// (disarming it).
    fn take_if_armed(&self, request: &[u8]) -> Option<u8> {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let (patterns, fate) = armed.as_ref()?;
        if !patterns.iter().all(|p| contains(request, p)) {
            return None;
        }
        let fate = *fate;
        *armed = None;
        if fate == HOLD {
            self.holding.store(true, Ordering::SeqCst);
        }
        Some(fate)
    }

    fn switch(&self, flag: &AtomicBool, on: bool) {
        flag.store(on, Ordering::SeqCst);
        self.changed.notify_waiters();
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
                    if shared.severed.load(Ordering::SeqCst) {
                        continue; // dropped: the link stays cut
                    }
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

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        let port = self.listen.rsplit(':').next().and_then(|p| p.parse().ok());
        port.unwrap_or_else(|| panic!("the proxy listens on {} (no port)", self.listen))
    }

    /// Loses the reply to the next request (one write of the client's) that contains every
    /// one of `patterns`, and resets its connection.
    pub fn arm(&self, patterns: &[&[u8]]) {
        self.arm_with(patterns, LOSE);
    }

    /// Holds back every reply of the connection that next sends a request containing every
    /// one of `patterns`, from that request's reply on.
    pub fn arm_hold(&self, patterns: &[&[u8]]) {
        self.arm_with(patterns, HOLD);
    }

    fn arm_with(&self, patterns: &[&[u8]], fate: u8) {
        let patterns = patterns.iter().map(|p| p.to_vec()).collect();
        let mut armed = self.shared.armed.lock().unwrap_or_else(|p| p.into_inner());
        *armed = Some((patterns, fate));
    }

    /// How many replies were lost so far ([`Self::arm`]).
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Whether a connection's replies are being held ([`Self::arm_hold`]).
    pub fn holding(&self) -> bool {
        self.shared.holding.load(Ordering::SeqCst)
    }

    /// Resets the connection whose replies are held, as a connection that breaks after its
    /// server ran a command.
    pub fn reset_held(&self) {
        self.shared.switch(&self.shared.reset, true);
    }

    /// Leaves the server's bytes unread on every connection while `paused` (a read already
    /// under way may still deliver one chunk: see [`Self::pause_now`]).
    pub fn pause(&self, paused: bool) {
        self.shared.switch(&self.shared.paused, paused);
    }

    /// Pauses, and waits until nothing more gets through.
    pub async fn pause_now(&self) {
        self.pause(true);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Cuts every connection for good and refuses new ones: what the proxy held never
    /// arrives.
    pub fn sever(&self) {
        self.shared.severed.store(true, Ordering::SeqCst);
        self.pause(true);
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

/// Stops accepting; connections already forwarded go on (call [`FaultProxy::sever`] to end
/// them).
impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes or a switch of `shared` ends the connection.
async fn forward(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    // Zero linger makes the close a reset; `tokio::io::split` (unlike `into_split`) sends
    // no FIN when its write half drops.
    let _ = client.set_zero_linger();
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = server.into_split();
    let fate = Arc::new(AtomicU8::new(FORWARD));
    let upstream = {
        let (shared, fate) = (Arc::clone(&shared), Arc::clone(&fate));
        async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let changed = shared.changed.notified();
                if shared.severed.load(Ordering::SeqCst) {
                    return;
                }
                let n = tokio::select! {
                    read = client_read.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    },
                    () = changed => continue,
                };
                if let Some(armed) = shared.take_if_armed(&buffer[..n]) {
                    fate.store(armed, Ordering::SeqCst);
                }
                shared.delay().await;
                if server_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let changed = shared.changed.notified();
            let held = fate.load(Ordering::SeqCst) == HOLD;
            if shared.severed.load(Ordering::SeqCst)
                || (held && shared.reset.swap(false, Ordering::SeqCst))
            {
                return;
            }
            if shared.paused.load(Ordering::SeqCst) {
                changed.await;
                continue;
            }
            let n = tokio::select! {
                read = server_read.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                () = changed => continue,
            };
            match fate.load(Ordering::SeqCst) {
                LOSE => {
                    shared.cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                // Held for ever: keep reading so the server is not blocked, deliver nothing.
                HOLD => continue,
                _ => {}
            }
            shared.delay().await;
            if client_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    // Whichever side ends first ends the connection: both halves are dropped, so the client
    // sees it reset without the reply.
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
