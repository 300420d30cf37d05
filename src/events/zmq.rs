//! vLLM's ZMQ transport for KV-event batches: a PUB socket and an optional replay ROUTER.
//!
//! A router subscribes to an engine's KV events as it subscribes to vLLM's
//! `ZmqEventPublisher` (`vllm/distributed/kv_events.py` at the commit named in
//! [`super`]): a SUB socket on the publisher's endpoint, and a DEALER (or REQ) socket on its
//! replay endpoint to fetch batches it missed. [`Publisher`] speaks the same protocol:
//!
//! - **live:** every batch is one three-frame message `[topic, seq, payload]`, `seq` an 8-byte
//!   big-endian unsigned integer counting batches from 0 without gaps, `payload` the msgpack
//!   `KVEventBatch` that [`super::encode_batch`] writes;
//! - **replay:** a request `[ "", start_seq ]` (8-byte big-endian) from a DEALER arrives at the
//!   ROUTER as `[identity, "", start_seq]`; the publisher answers with `["", seq, payload]` for
//!   every batch it still holds with `seq >= start_seq` (the last `buffer_steps` batches), then
//!   the end marker `["", -1 as 8-byte big-endian signed, ""]`. A request with another shape is
//!   ignored and counted, as vLLM ignores it.
//! - **bind or connect:** as vLLM decides, an endpoint with `*`, `::`, `ipc://` or `inproc://`
//!   is bound, any other is connected (for a relay or an XSUB proxy). `*` is bound as
//!   `0.0.0.0`. The replay endpoint is always bound. Unlike libzmq, zmq.rs connects
//!   eagerly: [`Publisher::bind`] on a connect endpoint waits until the peer accepts (or
//!   zmq.rs's connect timeout passes, and it fails).
//!
//! # Why this crate, and what differs from libzmq
//! `zeromq` (zmq.rs) is a pure-Rust ZMTP 3 implementation: nothing to link or build in C, so
//! `cargo build` works wherever Rust does and the publisher is covered by the same tests on
//! every machine; the `zmq` crate instead builds or links libzmq. Tests decode this
//! publisher's frames with libzmq's own SUB and DEALER sockets through pyzmq
//! (`tests/interop/kv_events_decode.py --zmq`). One behaviour differs: a libzmq PUB drops
//! messages for a subscriber at its high-water mark, while zmq.rs 0.6 waits for a slow
//! subscriber. Either way the engine never waits: [`Publisher::publish`] only enqueues, and a
//! full queue hands the payload back ([`PublishError::QueueFull`]) instead of blocking or
//! dropping it.
//!
//! # Threads
//! Like vLLM's publisher, the sockets live on one background thread (here with a
//! single-threaded tokio runtime, which zmq.rs needs); [`Publisher::publish`] assigns the
//! sequence number and enqueues. Dropping or [closing](Publisher::close) the publisher sends
//! what was enqueued, then closes the sockets.

use std::collections::VecDeque;
use std::fmt;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use augur_core::kv::KvEvent;
use bytes::Bytes;
use tokio::sync::mpsc;
use zeromq::util::PeerIdentity;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// The sequence frame of the replay's end marker: −1 as an 8-byte big-endian signed integer.
pub const END_SEQ: [u8; 8] = (-1i64).to_be_bytes();

/// Where and how a [`Publisher`] publishes. The defaults are vLLM's (`KVEventsConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublisherConfig {
    /// The PUB socket's endpoint [default `tcp://*:5557`]. `tcp://*:0` binds a free port;
    /// [`Publisher::endpoint`] says which.
    pub endpoint: String,
    /// The replay ROUTER's endpoint, if any [default none; vLLM's examples use
    /// `tcp://*:5558`].
    pub replay_endpoint: Option<String>,
    /// The first frame of every live message [default empty]; subscribers filter on its
    /// prefix.
    pub topic: String,
    /// How many of the latest batches the replay socket can resend [default 10,000]; ≥ 1.
    pub buffer_steps: usize,
    /// How many batches may wait for the publisher thread before [`Publisher::publish`]
    /// refuses one [default 100,000]; ≥ 1.
    pub max_queue_size: usize,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            endpoint: "tcp://*:5557".to_owned(),
            replay_endpoint: None,
            topic: String::new(),
            buffer_steps: 10_000,
            max_queue_size: 100_000,
        }
    }
}

/// Why a [`Publisher`] could not start or could not take a batch.
#[derive(Debug)]
pub enum PublishError {
    /// A setting is out of range (the message names it).
    Config(String),
    /// An endpoint could not be parsed, bound or connected.
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What ZeroMQ said.
        reason: String,
    },
    /// The queue to the publisher thread is full; the batch was not taken and comes back.
    /// No sequence number was used, so the stream has no gap: publish it again later, or
    /// resynchronise subscribers with an `AllBlocksCleared`.
    QueueFull(Vec<u8>),
    /// The publisher thread has stopped (the message says why); nothing more can be sent.
    Closed(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(m) => write!(f, "KV-event publisher: {m}"),
            Self::Endpoint { endpoint, reason } => {
                write!(f, "KV-event publisher: endpoint `{endpoint}`: {reason}")
            }
            Self::QueueFull(p) => write!(
                f,
                "KV-event publisher: the queue is full; a batch of {} bytes was not taken",
                p.len()
            ),
            Self::Closed(m) => write!(f, "KV-event publisher: stopped: {m}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// What a publisher did, returned by [`Publisher::close`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Batches handed to the PUB socket (a PUB socket without subscribers discards them, as
    /// ZeroMQ does; the replay buffer still keeps them).
    pub published: u64,
    /// Replay requests answered.
    pub replays: u64,
    /// Batches resent by replays.
    pub replayed: u64,
    /// Replay requests ignored because they did not have the shape `[identity, "", 8 bytes]`.
    pub bad_replay_requests: u64,
}

/// Publishes KV-event batches as vLLM's `ZmqEventPublisher` does (see the module doc).
///
/// ```no_run
/// use augur::events::zmq::{Publisher, PublisherConfig};
/// let mut publisher = Publisher::bind(PublisherConfig {
///     replay_endpoint: Some("tcp://*:5558".into()),
///     ..PublisherConfig::default()
/// })?;
/// # let events: Vec<augur::core::kv::KvEvent> = Vec::new();
/// // after each engine step, with the events just drained:
/// publisher.publish_events(&events, 0.0, 0)?;
/// # Ok::<(), augur::events::zmq::PublishError>(())
/// ```
pub struct Publisher {
    queue: Option<mpsc::Sender<(u64, Vec<u8>)>>,
    thread: Option<JoinHandle<Result<PublisherStats, String>>>,
    endpoint: String,
    replay_endpoint: Option<String>,
    next_seq: u64,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("endpoint", &self.endpoint)
            .field("replay_endpoint", &self.replay_endpoint)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// vLLM's rule: bind what names a wildcard or a local transport, connect anything else.
fn binds(endpoint: &str) -> bool {
    endpoint.contains('*')
        || endpoint.contains("::")
        || endpoint.starts_with("ipc://")
        || endpoint.starts_with("inproc://")
}

/// `tcp://*:P` as zmq.rs can bind it (`*` is not a host name to it).
fn bindable(endpoint: &str) -> String {
    endpoint.replacen("tcp://*:", "tcp://0.0.0.0:", 1)
}

fn endpoint_error(endpoint: &str, e: impl fmt::Display) -> PublishError {
    PublishError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    }
}

/// The sockets, set up on the publisher thread.
struct Sockets {
    publish: zeromq::PubSocket,
    replay: Option<zeromq::RouterSocket>,
}

async fn open(cfg: &PublisherConfig) -> Result<(Sockets, String, Option<String>), PublishError> {
    let mut publish = zeromq::PubSocket::new();
    let endpoint = if binds(&cfg.endpoint) {
        publish
            .bind(&bindable(&cfg.endpoint))
            .await
            .map_err(|e| endpoint_error(&cfg.endpoint, e))?
            .to_string()
    } else {
        publish
            .connect(&cfg.endpoint)
            .await
            .map_err(|e| endpoint_error(&cfg.endpoint, e))?;
        cfg.endpoint.clone()
    };
    let (replay, replay_endpoint) = match &cfg.replay_endpoint {
        None => (None, None),
        Some(ep) => {
            let mut router = zeromq::RouterSocket::new();
            let bound = router
                .bind(&bindable(ep))
                .await
                .map_err(|e| endpoint_error(ep, e))?;
            (Some(router), Some(bound.to_string()))
        }
    };
    Ok((Sockets { publish, replay }, endpoint, replay_endpoint))
}

/// One frame (zmq.rs frames are `bytes::Bytes`).
fn frame(bytes: impl Into<Bytes>) -> Bytes {
    bytes.into()
}

fn message(frames: Vec<Bytes>) -> ZmqMessage {
    ZmqMessage::try_from(frames).expect("every message built here has frames")
}

/// The replay request's start sequence, if the request has vLLM's shape.
fn start_seq(request: &ZmqMessage) -> Option<(PeerIdentity, u64)> {
    if request.len() != 3 {
        return None;
    }
    let identity = PeerIdentity::try_from(request.get(0)?.clone()).ok()?;
    let seq: [u8; 8] = request.get(2)?.as_ref().try_into().ok()?;
    Some((identity, u64::from_be_bytes(seq)))
}

async fn recv_replay(replay: &mut Option<zeromq::RouterSocket>) -> zeromq::ZmqResult<ZmqMessage> {
    match replay {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The publisher thread's loop: send what is queued, answer replay requests, until every
/// sender is gone and the queue is empty.
async fn serve(
    mut sockets: Sockets,
    mut queue: mpsc::Receiver<(u64, Vec<u8>)>,
    topic: Bytes,
    buffer_steps: usize,
) -> Result<PublisherStats, String> {
    let mut stats = PublisherStats::default();
    let mut buffer: VecDeque<(u64, Bytes)> = VecDeque::new();
    loop {
        tokio::select! {
            // Batches first: the engine's stream matters more than a replay (vLLM's order).
            biased;
            batch = queue.recv() => {
                let Some((seq, payload)) = batch else { break };
                let payload = frame(payload);
                let live = vec![topic.clone(), frame(seq.to_be_bytes().to_vec()), payload.clone()];
                sockets
                    .publish
                    .send(message(live))
                    .await
                    .map_err(|e| format!("sending batch {seq}: {e}"))?;
                stats.published += 1;
                if buffer.len() == buffer_steps {
                    buffer.pop_front();
                }
                buffer.push_back((seq, payload));
            }
            request = recv_replay(&mut sockets.replay) => {
                let Ok(request) = request else { continue };
                let Some((identity, start)) = start_seq(&request) else {
                    stats.bad_replay_requests += 1;
                    continue;
                };
                let router = sockets.replay.as_mut().expect("a request came from it");
                let empty = frame(Vec::new());
                let mut sent = 0;
                for (seq, payload) in buffer.iter().filter(|(s, _)| *s >= start) {
                    let reply = vec![
                        frame(identity.clone()),
                        empty.clone(),
                        frame(seq.to_be_bytes().to_vec()),
                        payload.clone(),
                    ];
                    // A requester that went away is no reason to stop publishing.
                    if router.send(message(reply)).await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                let end = vec![frame(identity), empty.clone(), frame(END_SEQ.to_vec()), empty];
                let _ = router.send(message(end)).await;
                stats.replays += 1;
                stats.replayed += sent;
            }
        }
    }
    Ok(stats)
}

impl Publisher {
    /// Opens the sockets (binding or connecting, see the module doc) and starts the publisher
    /// thread. Fails, with the endpoint named, if an endpoint cannot be used.
    pub fn bind(cfg: PublisherConfig) -> Result<Self, PublishError> {
        if cfg.buffer_steps == 0 {
            return Err(PublishError::Config(
                "buffer_steps must be at least 1".into(),
            ));
        }
        if cfg.max_queue_size == 0 {
            return Err(PublishError::Config(
                "max_queue_size must be at least 1".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(cfg.max_queue_size);
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("augur-kv-events".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the tokio runtime: {e}"))?;
                runtime.block_on(async move {
                    match open(&cfg).await {
                        Ok((sockets, endpoint, replay)) => {
                            let _ = ready_tx.send(Ok((endpoint, replay)));
                            let topic = frame(cfg.topic.into_bytes());
                            serve(sockets, rx, topic, cfg.buffer_steps).await
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            Ok(PublisherStats::default())
                        }
                    }
                })
            })
            .map_err(|e| PublishError::Closed(format!("spawning the publisher thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok((endpoint, replay_endpoint))) => Ok(Self {
                queue: Some(tx),
                thread: Some(thread),
                endpoint,
                replay_endpoint,
                next_seq: 0,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(PublishError::Closed(match thread.join() {
                Ok(Err(m)) => m,
                _ => "the publisher thread ended before opening its sockets".into(),
            })),
        }
    }

    /// The PUB socket's endpoint, with the port it bound (`tcp://127.0.0.1:41234`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The replay socket's endpoint, with the port it bound, if there is one.
    pub fn replay_endpoint(&self) -> Option<&str> {
        self.replay_endpoint.as_deref()
    }

    /// The sequence number the next batch will get (batches taken so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Enqueues one encoded batch and returns its sequence number. Never blocks: a full queue
    /// returns the payload in [`PublishError::QueueFull`] without using a sequence number.
    pub fn publish(&mut self, payload: Vec<u8>) -> Result<u64, PublishError> {
        let Some(queue) = &self.queue else {
            return Err(PublishError::Closed("closed".into()));
        };
        let seq = self.next_seq;
        match queue.try_send((seq, payload)) {
            Ok(()) => {
                self.next_seq += 1;
                Ok(seq)
            }
            Err(mpsc::error::TrySendError::Full((_, payload))) => {
                Err(PublishError::QueueFull(payload))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PublishError::Closed(
                "the publisher thread has stopped; close() says why".into(),
            )),
        }
    }

    /// Encodes `events` as one `KVEventBatch` ([`super::encode_batch`]) and publishes it.
    /// An empty slice publishes nothing and returns `None`, as vLLM sends no empty batch.
    pub fn publish_events(
        &mut self,
        events: &[KvEvent],
        ts: f64,
        dp_rank: u32,
    ) -> Result<Option<u64>, PublishError> {
        if events.is_empty() {
            return Ok(None);
        }
        self.publish(super::encode_batch(events, ts, dp_rank))
            .map(Some)
    }

    /// Sends everything enqueued, closes the sockets and says what the publisher did.
    pub fn close(mut self) -> Result<PublisherStats, PublishError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<PublisherStats, PublishError> {
        self.queue = None;
        match self.thread.take() {
            None => Err(PublishError::Closed("closed".into())),
            Some(t) => match t.join() {
                Ok(Ok(stats)) => Ok(stats),
                Ok(Err(m)) => Err(PublishError::Closed(m)),
                Err(_) => Err(PublishError::Closed("the publisher thread panicked".into())),
            },
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.shut_down();
        }
    }
}
