//! The sans-IO SIP transaction layer (RFC 3261 §17, with RFC 6026).
//!
//! One [`Endpoint`] per SIP stack holds every client and server
//! transaction. It performs no I/O, reads no clock and draws no random
//! numbers: time is the `now` argument, and branches and tags come from the
//! caller. The run loop of the I/O shell is
//!
//! ```text
//! loop {
//!     one mutation:  handle_message(now, msg, peer) | handle_timeout(now)
//!                    | send_request | send_response | cancel | send_stateless
//!                    | transport_error
//!     then drain:    while let Some(t) = ep.poll_transmit() { send t.bytes to t.dest }
//!                    while let Some(e) = ep.poll_event()    { give e to the TU }
//!     sleep until ep.poll_timeout() or the next message
//! }
//! ```
//!
//! # What the layer does
//! * **Matching.** Responses by top Via branch + CSeq method (§17.1.3);
//!   requests by branch + sent-by + method for RFC 3261 peers, and by
//!   Request-URI, tags, Call-ID, CSeq and top Via for RFC 2543 peers
//!   (§17.2.3, see `key.rs`). ACK goes to the INVITE transaction; a CANCEL
//!   is its own transaction, matched to its INVITE for
//!   [`TxEvent::Cancelled`] and answered 200 by the layer (§9.2), or 481
//!   when it matches nothing.
//! * **The four state machines** with Timers A-K, plus RFC 6026's Accepted
//!   states (Timers L and M), the ACK the INVITE client sends for a 3xx-6xx
//!   (§17.1.1.3), the 100 Trying of an INVITE server (§17.2.1,
//!   [`Endpoint::set_send_trying`]), and the UAS core's 2xx retransmission
//!   until the ACK (§13.3.1.4) with [`TxEvent::AckTimeout`]. Over TCP/TLS
//!   requests and 3xx-6xx are not retransmitted and Timers D, I, J, K are
//!   zero; the 2xx is retransmitted on every transport, as §13.3.1.4 says
//!   ("independent of whatever transport protocols are used").
//! * **Merged requests** (§8.2.2.2) get a stateless 482, and requests over
//!   [`Limits::max_transactions`] a stateless 503 with `Retry-After: 5`.
//! * **Bounded lifetime.** Besides the RFC timers, an INVITE client in
//!   Proceeding gives up after Timer C (180 s after the last provisional,
//!   [`Endpoint::set_timer_c`]) or 64*T1 after its CANCEL went out (§9.1),
//!   and a non-INVITE server transaction the TU never answers is dropped
//!   after 128*T1. Only an INVITE server transaction waits for its TU
//!   without a deadline: the TU must answer every INVITE it is given.
//!
//! # What it does not do
//! DNS or transport selection (the TU gives a [`Peer`]), Via/rport
//! handling of responses (responses go back to the peer the request came
//! from), reliable provisionals (RFC 3262), a transport failure on the
//! server side (§17.2.4: the I/O layer may retry on its own), and CANCEL of
//! a non-INVITE request (answered 481; §9.1 says not to send one).

mod client_invite;
mod client_non_invite;
mod key;
mod server_invite;
mod server_non_invite;
mod timer;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use crate::error::HeaderError;
use crate::header::Transport;
use crate::message::{Request, Response, SipMessage};
use crate::method::Method;
use crate::response::response_for;
use crate::status::StatusCode;

use client_invite::{CancelLink, ClientInvite};
use client_non_invite::ClientNonInvite;
use key::{AckKey, ClientKey, MergeKey, RequestIds, ServerKey};
use server_invite::{AckDisposition, ServerInvite};
use server_non_invite::ServerNonInvite;

/// The transport a message travels on, as far as the transaction layer
/// cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxTransport {
    /// UDP: unreliable, the layer retransmits.
    Udp,
    /// TCP: reliable.
    Tcp,
    /// TLS over TCP: reliable.
    Tls,
}

impl TxTransport {
    /// True for TCP and TLS: no retransmissions (Timers A, E, G are not
    /// used) and Timers D, I, J, K are zero (RFC 3261 §17).
    pub fn reliable(self) -> bool {
        !matches!(self, TxTransport::Udp)
    }

    /// The transport named in a Via, if the layer supports it.
    pub fn from_via(t: &Transport) -> Option<TxTransport> {
        match t {
            Transport::Udp => Some(TxTransport::Udp),
            Transport::Tcp => Some(TxTransport::Tcp),
            Transport::Tls => Some(TxTransport::Tls),
            _ => None,
        }
    }
}

/// The other end of a hop: address and transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// Remote address.
    pub addr: SocketAddr,
    /// Transport to reach it.
    pub transport: TxTransport,
}

impl Peer {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            transport: TxTransport::Udp,
        }
    }

    /// A TCP peer.
    pub fn tcp(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            transport: TxTransport::Tcp,
        }
    }
}

/// Bytes the I/O layer must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub dest: Peer,
    /// One whole SIP message.
    pub bytes: Bytes,
    /// The transaction it belongs to (`None` for stateless sends). When a
    /// transmit of a client transaction cannot be delivered, report it with
    /// [`Endpoint::transport_error`].
    pub tx: Option<TxId>,
}

macro_rules! tx_ids {
    ($($(#[$doc:meta])* $name:ident, $prefix:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u64);

        impl $name {
            /// The number, unique among all transactions of one endpoint.
            pub fn as_u64(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    )*};
}

tx_ids! {
    /// Handle of a client transaction (a request this endpoint sent).
    ClientTxId, "c";
    /// Handle of a server transaction (a request this endpoint received).
    ServerTxId, "s";
}

/// Either kind of transaction handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxId {
    /// A client transaction.
    Client(ClientTxId),
    /// A server transaction.
    Server(ServerTxId),
}

impl From<ClientTxId> for TxId {
    fn from(id: ClientTxId) -> TxId {
        TxId::Client(id)
    }
}

impl From<ServerTxId> for TxId {
    fn from(id: ServerTxId) -> TxId {
        TxId::Server(id)
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxId::Client(c) => c.fmt(f),
            TxId::Server(s) => s.fmt(f),
        }
    }
}

/// RFC 3261 §17 timer values (Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; default 500 ms. Values below 1 ms are raised to 1 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses; default 4 s (never below `t1`).
    pub t2: Duration,
    /// Maximum time a message stays in the network; default 5 s.
    pub t4: Duration,
    /// Timer B (INVITE client without any response); default 64*T1.
    /// Callers may shorten it for failover, per transaction too
    /// ([`Endpoint::send_request`]'s `timeout`).
    pub timer_b: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_b: None,
        }
    }
}

/// Resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live transactions (client + server) at most; a new request beyond
    /// it is answered 503 statelessly and `send_request` fails.
    pub max_transactions: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_transactions: 100_000,
        }
    }
}

/// What the transaction layer tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// A new request started a server transaction (INVITE or non-INVITE,
    /// not ACK, not a CANCEL that matched).
    NewRequest {
        /// The server transaction to answer on.
        tx: ServerTxId,
        /// The request.
        request: Request,
        /// Where it came from (responses go back there).
        peer: Peer,
    },
    /// An ACK that matched no INVITE server transaction in Completed state:
    /// the end-to-end ACK for a 2xx (RFC 3261 §17.2.3 / RFC 6026: in
    /// Accepted state it is passed up too, every copy). The TU matches it to
    /// its dialog.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// A CANCEL matched INVITE server transaction `tx` before its final
    /// response (§9.2): the layer already answered the CANCEL 200; the TU
    /// should answer the INVITE 487.
    Cancelled {
        /// The INVITE's server transaction.
        tx: ServerTxId,
    },
    /// A response for client transaction `tx`: every provisional, the first
    /// final, and for INVITE every 2xx (retransmissions and forks too) while
    /// in RFC 6026 Accepted state — the TU ACKs each one.
    Response {
        /// The client transaction.
        tx: ClientTxId,
        /// The response.
        response: Response,
    },
    /// A 2xx to an INVITE that matches no client transaction any more
    /// (retransmitted 200 after Timer M): the TU must ACK it again
    /// (§13.2.2.4).
    StrayResponse {
        /// The response.
        response: Response,
        /// Where it came from.
        peer: Peer,
    },
    /// Timer B (INVITE), Timer C (INVITE in Proceeding) or Timer F
    /// (non-INVITE) fired: no final response. The TU treats it as 408.
    Timeout {
        /// The client transaction.
        tx: ClientTxId,
    },
    /// The I/O layer could not send for `tx` (connection refused, ICMP
    /// unreachable): the TU treats it as 503 (§8.1.3.1).
    TransportError {
        /// The client transaction.
        tx: ClientTxId,
    },
    /// An INVITE server transaction that sent a 2xx got no ACK within
    /// 64*T1 (§13.3.1.4): the TU should send BYE.
    AckTimeout {
        /// The server transaction.
        tx: ServerTxId,
    },
    /// A transaction ended and its id is no longer valid. Sent for every
    /// transaction the TU knows (from `send_request`, `cancel` or
    /// `NewRequest`), never for the layer's own CANCEL server transactions.
    Terminated {
        /// The transaction.
        tx: TxId,
    },
}

/// The state of a transaction (RFC 3261 Figures 5-8, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxState {
    /// A CANCEL held until its INVITE gets a provisional response (§9.1).
    Pending,
    /// INVITE client, before any response.
    Calling,
    /// Non-INVITE, before any response.
    Trying,
    /// A provisional response was received / sent.
    Proceeding,
    /// A final (3xx-6xx for INVITE) response was received / sent.
    Completed,
    /// INVITE server: the ACK for the 3xx-6xx arrived.
    Confirmed,
    /// INVITE: a 2xx was received / sent (RFC 6026).
    Accepted,
    /// Ended (never visible through [`Endpoint::state`]).
    Terminated,
}

/// Why a call on the [`Endpoint`] failed. Input from the network never
/// produces an error: it is answered or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TxError {
    /// The id names no live transaction (it may have terminated).
    #[error("unknown or terminated transaction")]
    UnknownTransaction,
    /// The call is not valid in the transaction's current state.
    #[error("invalid in this state: {0}")]
    InvalidState(&'static str),
    /// [`Limits::max_transactions`] is reached.
    #[error("too many transactions")]
    TooManyTransactions,
    /// The request's top Via has no branch parameter (§8.1.1.7).
    #[error("the top Via has no branch")]
    NoBranch,
    /// A live client transaction already uses this branch and method.
    #[error("a live client transaction already uses this branch")]
    BranchInUse,
    /// A header the transaction needs is missing or invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] HeaderError),
}

/// Timer values after clamping, and the layer's own switches.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) t1: Duration,
    pub(crate) t2: Duration,
    pub(crate) t4: Duration,
    /// 64*T1: Timers B, F, H, J, L, M by default.
    pub(crate) t1x64: Duration,
    /// 128*T1: the non-INVITE server's Abandon timer.
    pub(crate) t1x128: Duration,
    timer_b: Duration,
    pub(crate) timer_c: Option<Duration>,
    send_trying: bool,
}

/// Output queues shared by all transactions.
#[derive(Debug, Default)]
pub(crate) struct Out {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

impl Out {
    pub(crate) fn send(&mut self, dest: Peer, bytes: Bytes, tx: Option<TxId>) {
        self.transmits.push_back(Transmit { dest, bytes, tx });
    }

    pub(crate) fn event(&mut self, e: TxEvent) {
        self.events.push_back(e);
    }
}

/// What a transaction needs to act: the time, the configuration and the
/// output queues.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) cfg: &'a Config,
    pub(crate) out: &'a mut Out,
}

#[derive(Debug)]
enum ClientTx {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

#[derive(Debug)]
struct ClientEntry {
    tx: ClientTx,
    key: ClientKey,
    /// This entry's deadline in `Endpoint::timers`.
    scheduled: Option<Instant>,
}

#[derive(Debug)]
enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

#[derive(Debug)]
struct ServerEntry {
    tx: ServerTx,
    key: ServerKey,
    merge: Option<MergeKey>,
    ack: Option<AckKey>,
    /// False for the CANCEL transactions the layer answers itself.
    announced: bool,
    scheduled: Option<Instant>,
}

impl ClientTx {
    fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.next_timeout(),
            ClientTx::NonInvite(t) => t.next_timeout(),
        }
    }

    fn on_response(&mut self, r: Response, ctx: &mut Ctx<'_>) {
        match self {
            ClientTx::Invite(t) => t.on_response(r, ctx),
            ClientTx::NonInvite(t) => t.on_response(r, ctx),
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            ClientTx::Invite(t) => t.on_timeout(ctx),
            ClientTx::NonInvite(t) => t.on_timeout(ctx),
        }
    }

    fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            ClientTx::Invite(t) => t.on_transport_error(ctx),
            ClientTx::NonInvite(t) => t.on_transport_error(ctx),
        }
    }

    fn state(&self) -> TxState {
        match self {
            ClientTx::Invite(t) => t.state(),
            ClientTx::NonInvite(t) => t.state(),
        }
    }

    fn request(&self) -> Option<&Request> {
        match self {
            ClientTx::Invite(t) => t.request.as_deref(),
            ClientTx::NonInvite(t) => t.request.as_deref(),
        }
    }
}

impl ServerTx {
    fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }

    fn next_timeout(&self) -> Option<Instant> {
        match self {
            ServerTx::Invite(t) => t.next_timeout(),
            ServerTx::NonInvite(t) => t.next_timeout(),
        }
    }

    fn on_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            ServerTx::Invite(t) => t.on_retransmission(ctx),
            ServerTx::NonInvite(t) => t.on_retransmission(ctx),
        }
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            ServerTx::Invite(t) => t.on_timeout(ctx),
            ServerTx::NonInvite(t) => t.on_timeout(ctx),
        }
    }

    fn state(&self) -> TxState {
        match self {
            ServerTx::Invite(t) => t.state(),
            ServerTx::NonInvite(t) => t.state(),
        }
    }

    fn request(&self) -> Option<&Request> {
        match self {
            ServerTx::Invite(t) => t.request.as_deref(),
            ServerTx::NonInvite(t) => t.request.as_deref(),
        }
    }
}

/// All transactions of one SIP stack (see the [module docs](self)).
#[derive(Debug)]
pub struct Endpoint {
    cfg: Config,
    limits: Limits,
    next_id: u64,
    /// Entries are boxed: a B-tree node holds 11 values and is about half
    /// full, so an inline entry (~0.5-1 KiB, mostly the kept request and
    /// the timer table) cost about twice its size per transaction, for the
    /// 32 s an accepted INVITE is kept (issue 15).
    clients: BTreeMap<ClientTxId, Box<ClientEntry>>,
    servers: BTreeMap<ServerTxId, Box<ServerEntry>>,
    client_keys: HashMap<ClientKey, ClientTxId>,
    server_keys: HashMap<ServerKey, ServerTxId>,
    merge_keys: HashMap<MergeKey, ServerTxId>,
    ack_keys: HashMap<AckKey, ServerTxId>,
    /// Every transaction's earliest deadline, in order (ids break ties, so
    /// the order of outputs is deterministic).
    timers: BTreeSet<(Instant, TxId)>,
    out: Out,
    /// The latest `now` given, for the one call that takes none.
    last_now: Option<Instant>,
    /// Requests refused because [`Limits::max_transactions`] was reached.
    limit_refusals: u64,
}

impl Endpoint {
    /// An endpoint without transactions.
    pub fn new(timers: TimerConfig, limits: Limits) -> Endpoint {
        let t1 = timers.t1.max(Duration::from_millis(1));
        Endpoint {
            cfg: Config {
                t1,
                t2: timers.t2.max(t1),
                t4: timers.t4,
                t1x64: t1.saturating_mul(64),
                t1x128: t1.saturating_mul(128),
                timer_b: timers.timer_b.unwrap_or(t1.saturating_mul(64)),
                timer_c: Some(Duration::from_secs(180)),
                send_trying: true,
            },
            limits,
            next_id: 0,
            clients: BTreeMap::new(),
            servers: BTreeMap::new(),
            client_keys: HashMap::new(),
            server_keys: HashMap::new(),
            merge_keys: HashMap::new(),
            ack_keys: HashMap::new(),
            timers: BTreeSet::new(),
            out: Out::default(),
            last_now: None,
            limit_refusals: 0,
        }
    }

    /// New limits (a configuration reload). Transactions beyond a lowered
    /// `max_transactions` run to their end; only new ones are refused.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// How many requests were refused so far because
    /// [`Limits::max_transactions`] was reached: answered 503 statelessly,
    /// a CANCEL's 200 sent without a transaction, or
    /// [`TxError::TooManyTransactions`] from [`Endpoint::send_request`].
    pub fn limit_refusals(&self) -> u64 {
        self.limit_refusals
    }

    /// Whether an INVITE server transaction sends `100 Trying` as soon as
    /// it is created (§17.2.1); default true. With false, the TU should send
    /// a provisional within 200 ms itself.
    pub fn set_send_trying(&mut self, on: bool) {
        self.cfg.send_trying = on;
    }

    /// Timer C: how long an INVITE client transaction waits in Proceeding
    /// after the last provisional before reporting [`TxEvent::Timeout`]
    /// (RFC 3261 §16.6 step 11 asks more than 3 minutes); default 180 s,
    /// `None` waits forever (the TU must then CANCEL).
    pub fn set_timer_c(&mut self, timer_c: Option<Duration>) {
        self.cfg.timer_c = timer_c;
    }

    fn touch(&mut self, now: Instant) {
        self.last_now = Some(self.last_now.map_or(now, |t| t.max(now)));
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Live transactions, client and server (for metrics and limits).
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// True without live transactions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of a live transaction.
    pub fn state(&self, tx: TxId) -> Option<TxState> {
        match tx {
            TxId::Client(c) => self.clients.get(&c).map(|e| e.tx.state()),
            TxId::Server(s) => self.servers.get(&s).map(|e| e.tx.state()),
        }
    }

    /// The request that created a live transaction, until its final
    /// response: a finished transaction kept for its timers holds only what
    /// matching and retransmitting need (its keys, the last response).
    pub fn request(&self, tx: TxId) -> Option<&Request> {
        match tx {
            TxId::Client(c) => self.clients.get(&c).and_then(|e| e.tx.request()),
            TxId::Server(s) => self.servers.get(&s).and_then(|e| e.tx.request()),
        }
    }

    /// The next transmit; call until `None` after every mutation.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU; call until `None` after every mutation.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// The earliest timer of any transaction: call
    /// [`Endpoint::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.touch(now);
        // Each transaction runs once per call, so no timer can loop.
        let due: Vec<TxId> = self
            .timers
            .iter()
            .take_while(|&&(at, _)| at <= now)
            .map(|&(_, id)| id)
            .collect();
        for id in due {
            match id {
                TxId::Client(c) => {
                    if let Some(e) = self.clients.get_mut(&c) {
                        let mut ctx = Ctx {
                            now,
                            cfg: &self.cfg,
                            out: &mut self.out,
                        };
                        e.tx.on_timeout(&mut ctx);
                    }
                    self.settle_client(now, c);
                }
                TxId::Server(s) => {
                    if let Some(e) = self.servers.get_mut(&s) {
                        let mut ctx = Ctx {
                            now,
                            cfg: &self.cfg,
                            out: &mut self.out,
                        };
                        e.tx.on_timeout(&mut ctx);
                    }
                    self.settle_server(s);
                }
            }
        }
    }

    /// A message arrived from `peer`.
    pub fn handle_message(&mut self, now: Instant, msg: SipMessage, peer: Peer) {
        self.touch(now);
        match msg {
            SipMessage::Response(r) => self.on_response(now, r, peer),
            SipMessage::Request(r) => self.on_request(now, r, peer),
        }
    }

    fn on_response(&mut self, now: Instant, response: Response, peer: Peer) {
        let Some(key) = ClientKey::for_response(&response) else {
            return; // cannot match anything (§18.1.2: discard)
        };
        match self.client_keys.get(&key).copied() {
            Some(id) => {
                if let Some(e) = self.clients.get_mut(&id) {
                    let mut ctx = Ctx {
                        now,
                        cfg: &self.cfg,
                        out: &mut self.out,
                    };
                    e.tx.on_response(response, &mut ctx);
                }
                self.settle_client(now, id);
            }
            None => {
                let invite = response
                    .headers
                    .cseq()
                    .is_ok_and(|c| c.method == Method::Invite);
                if invite && response.status.is_success() {
                    self.out.event(TxEvent::StrayResponse { response, peer });
                }
            }
        }
    }

    fn on_request(&mut self, now: Instant, request: Request, peer: Peer) {
        let Some(ids) = RequestIds::of(&request) else {
            return; // no usable Via/From/To/Call-ID/CSeq: nothing to match or answer
        };
        match request.method {
            Method::Ack => self.on_ack(now, request, ids, peer),
            Method::Cancel => self.on_cancel(now, request, ids, peer),
            _ => {
                if let Some(&id) = self.server_keys.get(&ids.key) {
                    if let Some(e) = self.servers.get_mut(&id) {
                        let mut ctx = Ctx {
                            now,
                            cfg: &self.cfg,
                            out: &mut self.out,
                        };
                        e.tx.on_retransmission(&mut ctx);
                    }
                    self.settle_server(id);
                    return;
                }
                let merge = ids.merge_key(&request.method);
                if merge
                    .as_ref()
                    .is_some_and(|m| self.merge_keys.contains_key(m))
                {
                    self.reply_stateless(&request, peer, StatusCode::LOOP_DETECTED, false);
                    return;
                }
                if self.len() >= self.limits.max_transactions {
                    self.limit_refusals += 1;
                    self.reply_stateless(&request, peer, StatusCode::SERVICE_UNAVAILABLE, true);
                    return;
                }
                let id = ServerTxId(self.next_id());
                let mut ctx = Ctx {
                    now,
                    cfg: &self.cfg,
                    out: &mut self.out,
                };
                let tx = if request.method == Method::Invite {
                    let send_trying = ctx.cfg.send_trying;
                    ServerTx::Invite(ServerInvite::start(
                        id,
                        request.clone(),
                        peer,
                        send_trying,
                        &mut ctx,
                    ))
                } else {
                    ServerTx::NonInvite(ServerNonInvite::start(id, request.clone(), peer, &mut ctx))
                };
                let key = ids.key.detached();
                let merge = merge.as_ref().map(MergeKey::detached);
                self.server_keys.insert(key.clone(), id);
                if let Some(m) = &merge {
                    self.merge_keys.insert(m.clone(), id);
                }
                self.servers.insert(
                    id,
                    Box::new(ServerEntry {
                        tx,
                        key,
                        merge,
                        ack: None,
                        announced: true,
                        scheduled: None,
                    }),
                );
                self.out.event(TxEvent::NewRequest {
                    tx: id,
                    request,
                    peer,
                });
                self.settle_server(id);
            }
        }
    }

    /// §17.2.3 / RFC 6026: an ACK for a 3xx-6xx is absorbed by its INVITE
    /// transaction (or, for the layer's stateless answers, recognised by
    /// its To tag); any other ACK goes to the TU.
    fn on_ack(&mut self, now: Instant, request: Request, ids: RequestIds, peer: Peer) {
        let mut target = self.server_keys.get(&ids.key).copied();
        if target.is_none() && ids.key.is_rfc2543() {
            // The INVITE had no To tag; its ACK carries the one we answered with.
            if let Some(&id) = self.server_keys.get(&ids.key.with_to_tag(None)) {
                if let Some(ServerEntry {
                    tx: ServerTx::Invite(inv),
                    ..
                }) = self.servers.get(&id).map(|e| &**e)
                {
                    if inv.to_tag == ids.to_tag {
                        target = Some(id);
                    }
                }
            }
        }
        if target.is_none() {
            target = self.ack_keys.get(&ids.ack_key()).copied();
        }
        if target.is_none() && ids.to_tag.as_deref() == Some(derived_tag(&request).as_bytes()) {
            return; // the ACK for one of our stateless 3xx-6xx answers
        }
        if let Some(id) = target {
            if let Some(ServerEntry {
                tx: ServerTx::Invite(inv),
                ..
            }) = self.servers.get_mut(&id).map(|e| &mut **e)
            {
                let mut ctx = Ctx {
                    now,
                    cfg: &self.cfg,
                    out: &mut self.out,
                };
                if inv.on_ack(&mut ctx) == AckDisposition::PassUp {
                    self.out.event(TxEvent::Ack { request, peer });
                }
                self.settle_server(id);
                return;
            }
        }
        self.out.event(TxEvent::Ack { request, peer });
    }

    /// §9.2: a CANCEL is its own transaction, answered 200 by the layer when
    /// it matches an INVITE server transaction, 481 otherwise.
    fn on_cancel(&mut self, now: Instant, request: Request, ids: RequestIds, peer: Peer) {
        if let Some(&id) = self.server_keys.get(&ids.key) {
            if let Some(e) = self.servers.get_mut(&id) {
                let mut ctx = Ctx {
                    now,
                    cfg: &self.cfg,
                    out: &mut self.out,
                };
                e.tx.on_retransmission(&mut ctx);
            }
            self.settle_server(id);
            return;
        }
        let invite = self
            .server_keys
            .get(&ids.key.with_method(Method::Invite))
            .and_then(|id| match self.servers.get(id).map(|e| &**e) {
                Some(ServerEntry {
                    tx: ServerTx::Invite(inv),
                    ..
                }) => Some((*id, inv.to_tag.clone(), inv.is_proceeding())),
                _ => None,
            });
        let Some((invite_id, to_tag, proceeding)) = invite else {
            self.reply_stateless(&request, peer, StatusCode::CALL_DOES_NOT_EXIST, false);
            return;
        };
        let tag = match to_tag {
            Some(t) => String::from_utf8_lossy(&t).into_owned(),
            None => derived_tag(&request),
        };
        let ok = response_for(&request, StatusCode::OK, "OK", Some(&tag));
        if self.len() < self.limits.max_transactions {
            let id = ServerTxId(self.next_id());
            let mut ctx = Ctx {
                now,
                cfg: &self.cfg,
                out: &mut self.out,
            };
            let mut tx = ServerNonInvite::start(id, request, peer, &mut ctx);
            // A fresh transaction in Trying always takes a final response.
            let _ = tx.send_response(&ok, &mut ctx);
            let key = ids.key.detached();
            self.server_keys.insert(key.clone(), id);
            self.servers.insert(
                id,
                Box::new(ServerEntry {
                    tx: ServerTx::NonInvite(tx),
                    key,
                    merge: None,
                    ack: None,
                    announced: false,
                    scheduled: None,
                }),
            );
            self.settle_server(id);
        } else {
            self.limit_refusals += 1;
            self.out.send(peer, ok.to_bytes(), None);
        }
        if proceeding {
            self.out.event(TxEvent::Cancelled { tx: invite_id });
        }
    }

    fn reply_stateless(&mut self, req: &Request, peer: Peer, status: StatusCode, retry: bool) {
        let reason = status.canonical_reason().unwrap_or("");
        let mut resp = response_for(req, status, reason, Some(&derived_tag(req)));
        if retry {
            // A constant, valid header: cannot fail.
            let _ = resp.headers.append("Retry-After", "5");
        }
        self.out.send(peer, resp.to_bytes(), None);
    }

    /// Starts a client transaction for `request` (INVITE or non-INVITE; an
    /// ACK goes through [`Endpoint::send_stateless`]) and sends it to
    /// `dest`. `timeout` overrides Timer B (INVITE) or Timer F (non-INVITE,
    /// default 64*T1) for this transaction: failover deadlines.
    ///
    /// # Errors
    /// [`TxError::NoBranch`] without a top Via branch,
    /// [`TxError::InvalidRequest`] when Via, From, To, Call-ID or CSeq is
    /// missing or invalid, [`TxError::InvalidState`] for an ACK or a CSeq
    /// method that is not the request's, [`TxError::BranchInUse`],
    /// [`TxError::TooManyTransactions`].
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        dest: Peer,
        timeout: Option<Duration>,
    ) -> Result<ClientTxId, TxError> {
        self.touch(now);
        if request.method == Method::Ack {
            return Err(TxError::InvalidState(
                "an ACK has no client transaction: use send_stateless",
            ));
        }
        let via = request.headers.top_via_ids()?;
        let key = ClientKey::of(&via, &request.method).ok_or(TxError::NoBranch)?;
        if request.headers.cseq()?.method != request.method {
            return Err(TxError::InvalidState("CSeq method differs from the method"));
        }
        request.headers.from()?;
        request.headers.to()?;
        request.headers.call_id()?;
        if self.client_keys.contains_key(&key) {
            return Err(TxError::BranchInUse);
        }
        if self.len() >= self.limits.max_transactions {
            self.limit_refusals += 1;
            return Err(TxError::TooManyTransactions);
        }
        let id = ClientTxId(self.next_id());
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            out: &mut self.out,
        };
        let tx = if request.method == Method::Invite {
            let b = timeout.unwrap_or(ctx.cfg.timer_b);
            ClientTx::Invite(ClientInvite::start(id, request, dest, b, &mut ctx))
        } else {
            let f = timeout.unwrap_or(ctx.cfg.t1x64);
            ClientTx::NonInvite(ClientNonInvite::start(id, request, dest, f, true, &mut ctx))
        };
        let key = key.detached();
        self.client_keys.insert(key.clone(), id);
        self.clients.insert(
            id,
            Box::new(ClientEntry {
                tx,
                key,
                scheduled: None,
            }),
        );
        self.settle_client(now, id);
        Ok(id)
    }

    /// CANCELs client INVITE transaction `tx` (§9.1) and returns the
    /// CANCEL's own client transaction, whose 200 arrives as a
    /// [`TxEvent::Response`]. Before any provisional response the CANCEL is
    /// held (state [`TxState::Pending`]) and sent when one arrives; if a
    /// final response or a timeout comes first, it is dropped (a
    /// `Terminated` event, no response). Calling it again returns the same
    /// id. The CANCEL is created even at [`Limits::max_transactions`]: one
    /// per INVITE at most.
    ///
    /// # Errors
    /// [`TxError::UnknownTransaction`]; [`TxError::InvalidState`] for a
    /// non-INVITE or after a final response; [`TxError::BranchInUse`] when
    /// the TU already sent its own CANCEL with that branch.
    pub fn cancel(&mut self, now: Instant, tx: ClientTxId) -> Result<ClientTxId, TxError> {
        self.touch(now);
        let entry = self.clients.get(&tx).ok_or(TxError::UnknownTransaction)?;
        let ClientTx::Invite(inv) = &entry.tx else {
            return Err(TxError::InvalidState("only an INVITE can be cancelled"));
        };
        match inv.cancel {
            CancelLink::Pending(c) | CancelLink::Sent(c) => return Ok(c),
            CancelLink::None => {}
        }
        if !inv.is_calling() && !inv.is_proceeding() {
            return Err(TxError::InvalidState(
                "a final response was already received",
            ));
        }
        let key = entry.key.with_method(Method::Cancel);
        if self.client_keys.contains_key(&key) {
            return Err(TxError::BranchInUse);
        }
        let request = inv
            .request
            .as_ref()
            .ok_or(TxError::InvalidState(
                "a final response was already received",
            ))?
            .cancel()?;
        let (dest, send_now) = (inv.dest, inv.is_proceeding());
        let cid = ClientTxId(self.next_id());
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            out: &mut self.out,
        };
        let f = ctx.cfg.t1x64;
        let cancel = ClientNonInvite::start(cid, request, dest, f, send_now, &mut ctx);
        if let Some(ClientEntry {
            tx: ClientTx::Invite(inv),
            ..
        }) = self.clients.get_mut(&tx).map(|e| &mut **e)
        {
            if send_now {
                inv.cancel = CancelLink::Sent(cid);
                inv.cancel_sent(&mut ctx);
            } else {
                inv.cancel = CancelLink::Pending(cid);
            }
        }
        self.client_keys.insert(key.clone(), cid);
        self.clients.insert(
            cid,
            Box::new(ClientEntry {
                tx: ClientTx::NonInvite(cancel),
                key,
                scheduled: None,
            }),
        );
        self.settle_client(now, tx);
        self.settle_client(now, cid);
        Ok(cid)
    }

    /// Responds on server transaction `tx` (RFC 3261 §17.2, RFC 6026).
    ///
    /// INVITE: 1xx keeps Proceeding; 2xx enters Accepted, where the layer
    /// retransmits the 2xx (T1, 2T1, .. T2) until an ACK with the same
    /// Call-ID, CSeq number and To tag arrives ([`TxEvent::Ack`]) or 64*T1
    /// passes ([`TxEvent::AckTimeout`]), absorbing INVITE retransmissions;
    /// further 2xx are allowed. 3xx-6xx enters Completed: Timer G resends
    /// it until the ACK, which is absorbed (Timer I), or Timer H.
    /// Non-INVITE: a final response enters Completed (Timer J), where
    /// retransmitted requests get the last response again.
    ///
    /// Build `response` with [`response_for`] from the request of
    /// [`TxEvent::NewRequest`] (or [`Endpoint::request`]).
    ///
    /// # Errors
    /// [`TxError::UnknownTransaction`]; [`TxError::InvalidState`] after a
    /// final response (other than another 2xx to an INVITE).
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        response: Response,
    ) -> Result<(), TxError> {
        self.touch(now);
        let entry = self
            .servers
            .get_mut(&tx)
            .ok_or(TxError::UnknownTransaction)?;
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            out: &mut self.out,
        };
        match &mut entry.tx {
            ServerTx::Invite(inv) => {
                inv.send_response(&response, &mut ctx)?;
                if response.status.is_success() && entry.ack.is_none() {
                    if let Some(k) = inv
                        .request
                        .as_deref()
                        .and_then(|r| AckKey::for_2xx(r, &response))
                    {
                        let k = k.detached();
                        self.ack_keys.insert(k.clone(), tx);
                        entry.ack = Some(k);
                    }
                }
            }
            ServerTx::NonInvite(t) => t.send_response(&response, &mut ctx)?,
        }
        self.settle_server(tx);
        Ok(())
    }

    /// Sends `msg` to `dest` outside any transaction: the ACK for a 2xx,
    /// stateless responses.
    pub fn send_stateless(&mut self, msg: SipMessage, dest: Peer) {
        self.out.send(dest, msg.to_bytes(), None);
    }

    /// The I/O layer could not deliver a transmit of client transaction
    /// `tx` (§17.1.4): before a final response the transaction ends with
    /// [`TxEvent::TransportError`]; afterwards this is ignored, as are
    /// unknown ids.
    pub fn transport_error(&mut self, tx: ClientTxId) {
        // No timer is armed on this path; any recent time will do.
        let Some(now) = self.last_now else {
            return;
        };
        let Some(entry) = self.clients.get_mut(&tx) else {
            return;
        };
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            out: &mut self.out,
        };
        entry.tx.on_transport_error(&mut ctx);
        self.settle_client(now, tx);
    }

    /// After any change to client transaction `id`: release or send its
    /// pending CANCEL, reschedule it, or remove it when terminated.
    fn settle_client(&mut self, now: Instant, id: ClientTxId) {
        let mut follow = None;
        if let Some(ClientEntry {
            tx: ClientTx::Invite(inv),
            ..
        }) = self.clients.get_mut(&id).map(|e| &mut **e)
        {
            if let CancelLink::Pending(cid) = inv.cancel {
                if inv.is_proceeding() {
                    inv.cancel = CancelLink::Sent(cid);
                    inv.cancel_sent(&mut Ctx {
                        now,
                        cfg: &self.cfg,
                        out: &mut self.out,
                    });
                    follow = Some((cid, true));
                } else if !inv.is_calling() {
                    inv.cancel = CancelLink::None;
                    follow = Some((cid, false));
                }
            }
        }
        self.reschedule_client(id);
        if let Some((cid, send)) = follow {
            if let Some(ClientEntry {
                tx: ClientTx::NonInvite(c),
                ..
            }) = self.clients.get_mut(&cid).map(|e| &mut **e)
            {
                if send {
                    c.begin(&mut Ctx {
                        now,
                        cfg: &self.cfg,
                        out: &mut self.out,
                    });
                } else if c.is_pending() {
                    c.terminate();
                }
            }
            self.reschedule_client(cid);
        }
    }

    fn reschedule_client(&mut self, id: ClientTxId) {
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(at) = e.scheduled.take() {
            self.timers.remove(&(at, TxId::Client(id)));
        }
        if e.tx.is_terminated() {
            let key = e.key.clone();
            self.clients.remove(&id);
            if self.client_keys.get(&key) == Some(&id) {
                self.client_keys.remove(&key);
            }
            self.out.event(TxEvent::Terminated {
                tx: TxId::Client(id),
            });
        } else if let Some(at) = e.tx.next_timeout() {
            e.scheduled = Some(at);
            self.timers.insert((at, TxId::Client(id)));
        }
    }

    /// After any change to server transaction `id`: reschedule it, or
    /// remove it and its keys when terminated.
    fn settle_server(&mut self, id: ServerTxId) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        if let Some(at) = e.scheduled.take() {
            self.timers.remove(&(at, TxId::Server(id)));
        }
        if !e.tx.is_terminated() {
            if let Some(at) = e.tx.next_timeout() {
                e.scheduled = Some(at);
                self.timers.insert((at, TxId::Server(id)));
            }
            return;
        }
        let Some(e) = self.servers.remove(&id) else {
            return;
        };
        if self.server_keys.get(&e.key) == Some(&id) {
            self.server_keys.remove(&e.key);
        }
        if let Some(m) = e.merge {
            if self.merge_keys.get(&m) == Some(&id) {
                self.merge_keys.remove(&m);
            }
        }
        if let Some(a) = e.ack {
            if self.ack_keys.get(&a) == Some(&id) {
                self.ack_keys.remove(&a);
            }
        }
        if e.announced {
            self.out.event(TxEvent::Terminated {
                tx: TxId::Server(id),
            });
        }
    }
}

/// The To tag of the layer's stateless answers (481, 482, 503, the 200 to
/// a CANCEL before any tagged response): a hash of the request's Call-ID,
/// From tag, CSeq number and top Via branch (the whole top Via for RFC 2543
/// peers), so no RNG is needed, a retransmitted request gets the same tag,
/// and the ACK for a stateless 3xx-6xx, which carries the same values, is
/// recognised and absorbed (FNV-1a, 64 bits, hex).
fn derived_tag(req: &Request) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b.iter().chain(b"\x00") {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let hd = &req.headers;
    if let Ok(c) = hd.call_id() {
        eat(c.as_bytes());
    }
    if let Ok(Some(t)) = hd.from_tag() {
        eat(&t);
    }
    if let Ok(c) = hd.cseq() {
        eat(&c.seq.to_be_bytes());
    }
    if let Ok(v) = hd.top_via() {
        match v.branch() {
            Some(b) => eat(b),
            None => {
                let mut raw = Vec::new();
                v.write_to(&mut raw);
                eat(&raw);
            }
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests;
