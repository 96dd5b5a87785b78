//! The WebSocket clients of a load run: opening them, learning their
//! connection ids, and timing what reaches them.

use super::*;

pub(super) type ClientWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// State the client tasks report into.
pub(super) struct Board {
    pub(super) base: Instant,
    /// Per post phase (0: throughput, 1: paced).
    pub(super) delivered: [AtomicU64; 2],
    pub(super) last_delivery_ns: [AtomicU64; 2],
    pub(super) latencies: [Latencies; 2],
    pub(super) fanout_seq: AtomicU64,
    pub(super) fanout_got: AtomicUsize,
    pub(super) fanout_target: AtomicUsize,
    pub(super) fanout_done: Notify,
    pub(super) closing: CancellationToken,
}

impl Board {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            delivered: Default::default(),
            last_delivery_ns: Default::default(),
            latencies: [Latencies::new(), Latencies::new()],
            fanout_seq: AtomicU64::new(0),
            fanout_got: AtomicUsize::new(0),
            fanout_target: AtomicUsize::new(0),
            fanout_done: Notify::new(),
            closing: CancellationToken::new(),
        }
    }

    pub(super) fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Waits up to `timeout` for `accepted` messages of post phase `phase`
    /// still on their way; returns how many arrived.
    pub(super) async fn wait_delivered(
        &self,
        phase: usize,
        accepted: u64,
        timeout: Duration,
    ) -> u64 {
        let deadline = Instant::now() + timeout;
        while self.delivered[phase].load(Ordering::Relaxed) < accepted && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.delivered[phase].load(Ordering::Relaxed)
    }

    pub(super) fn on_text(&self, client: usize, text: &str) {
        if let Some((phase, sent_ns)) = parse_probe(text) {
            let now = self.now_ns();
            self.latencies[phase].record(client, now.saturating_sub(sent_ns) / 1000);
            self.delivered[phase].fetch_add(1, Ordering::Relaxed);
            self.last_delivery_ns[phase].fetch_max(now, Ordering::Relaxed);
        } else if text.contains(r#""type":"progress""#)
            && number_after(text, r#""seq":"#) == Some(self.fanout_seq.load(Ordering::Acquire))
        {
            let got = self.fanout_got.fetch_add(1, Ordering::AcqRel) + 1;
            if got == self.fanout_target.load(Ordering::Acquire) {
                self.fanout_done.notify_one();
            }
        }
    }
}

/// The body of a probe message: which phase sent it and when (ns since the run began).
pub(super) fn probe(phase: usize, sent_ns: u64) -> String {
    format!(r#"{{"k":{phase},"t":{sent_ns}}}"#)
}

pub(super) fn parse_probe(text: &str) -> Option<(usize, u64)> {
    let rest = text.strip_prefix(r#"{"k":"#)?;
    let (phase, rest) = rest.split_once(',')?;
    let phase: usize = phase.parse().ok().filter(|p| *p < 2)?;
    let t = rest.strip_prefix(r#""t":"#)?.strip_suffix('}')?;
    Some((phase, t.parse().ok()?))
}

pub(super) fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

pub(super) fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    Some(&rest[..rest.find('"')?])
}

/// Where the target listens, split for the raw clients.
pub(super) struct Target {
    pub(super) ws_url: String,
    pub(super) ws_addr: SocketAddr,
    pub(super) mgmt_addr: SocketAddr,
    pub(super) mgmt_host: String,
    /// Path prefix before `/@connections/`, without a trailing slash.
    pub(super) mgmt_prefix: String,
}

pub(super) async fn resolve(authority: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(authority)
        .await
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect::<Vec<_>>();
    // Prefer IPv4: the source-address spread works on 127.0.0.0/8.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))
}

impl Target {
    pub(super) async fn new(opts: &LoadOptions) -> Result<Target, String> {
        require_loopback(&opts.ws_url)?;
        require_loopback(&opts.management_url)?;
        let ws: Uri = opts
            .ws_url
            .parse()
            .map_err(|e| format!("bad --ws-url {}: {e}", opts.ws_url))?;
        let mgmt: Uri = opts
            .management_url
            .parse()
            .map_err(|e| format!("bad --management-url {}: {e}", opts.management_url))?;
        if ws.scheme_str() != Some("ws") {
            return Err("--ws-url must be ws:// (loopback, no TLS)".into());
        }
        if mgmt.scheme_str() != Some("http") {
            return Err("--management-url must be http:// (loopback, no TLS)".into());
        }
        let authority = |u: &Uri, default: u16| {
            u.authority().map(|a| match a.port_u16() {
                Some(_) => a.to_string(),
                None => format!("{}:{default}", a.host()),
            })
        };
        let ws_auth = authority(&ws, 80).ok_or("--ws-url has no host")?;
        let mgmt_auth = authority(&mgmt, 80).ok_or("--management-url has no host")?;
        Ok(Target {
            ws_url: opts.ws_url.clone(),
            ws_addr: resolve(&ws_auth).await?,
            mgmt_addr: resolve(&mgmt_auth).await?,
            mgmt_host: mgmt_auth,
            mgmt_prefix: mgmt.path().trim_end_matches('/').to_string(),
        })
    }

    pub(super) fn post_path(&self, connection_id: &str) -> String {
        let id = percent_encoding::utf8_percent_encode(
            connection_id,
            percent_encoding::NON_ALPHANUMERIC,
        );
        format!("{}/@connections/{id}", self.mgmt_prefix)
    }
}

pub(super) fn client_config() -> WebSocketConfig {
    // Small buffers: thousands of clients share this process.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

pub(super) fn error_key(stage: &str, e: impl std::fmt::Display) -> String {
    let mut s = format!("{stage}: {e}");
    s.truncate(80);
    s
}

pub(super) async fn open_client(
    target: &Target,
    url: &str,
    index: usize,
    source_ips: u8,
) -> Result<ClientWs, String> {
    let socket = match target.ws_addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| error_key("socket", e))?;
    if source_ips > 1 && target.ws_addr.ip().is_loopback() && target.ws_addr.is_ipv4() {
        let host = 1 + (index % source_ips as usize) as u8;
        let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
        socket.bind(src).map_err(|e| error_key("bind", e))?;
    }
    let stream = socket
        .connect(target.ws_addr)
        .await
        .map_err(|e| error_key("tcp", e))?;
    let _ = stream.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await
    .map_err(|e| error_key("upgrade", e))?;
    Ok(ws)
}

/// Sends `ping` and waits for the `pong` naming this connection.
pub(super) async fn identify(ws: &mut ClientWs) -> Result<String, String> {
    ws.send(Message::text(r#"{"action":"ping"}"#))
        .await
        .map_err(|e| error_key("ping", e))?;
    let wait = async {
        while let Some(m) = ws.next().await {
            if let Ok(Message::Text(t)) = m
                && let Some(id) = string_after(t.as_str(), r#""connectionId":""#)
            {
                return Ok(id.to_string());
            }
        }
        Err("ping: connection ended before the pong".to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| "ping: no pong within 10 s".to_string())?
}

/// Reads until the close phase, then closes cleanly. True when the
/// connection lasted until the close phase.
pub(super) async fn read_client(mut ws: ClientWs, index: usize, board: Arc<Board>) -> bool {
    loop {
        tokio::select! {
            biased;
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => board.on_text(index, t.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
                Some(Ok(_)) => {}
            },
            _ = board.closing.cancelled() => break,
        }
    }
    let closing = async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
    true
}

pub(super) struct Connected {
    pub(super) clients: Vec<(String, ClientWs)>,
    pub(super) report: ConnectReport,
}

/// Opens `opts.clients` clients to `url`, a bounded number at a time.
pub(super) async fn open_all(
    target: &Target,
    url: &str,
    opts: &LoadOptions,
) -> (Vec<Result<ClientWs, String>>, f64, Histogram<u64>) {
    let pb = bar(!opts.quiet, opts.clients as u64, "connect");
    let started = Instant::now();
    let handshakes = Mutex::new(histogram());
    // Past this many failures the target is at a limit: stop trying, so a
    // run that finds the ceiling ends quickly and says where it was.
    let give_up = (opts.clients / 100).max(100);
    let failures = AtomicUsize::new(0);
    let results = futures_util::stream::iter(0..opts.clients)
        .map(|i| {
            let pb = &pb;
            let handshakes = &handshakes;
            let failures = &failures;
            async move {
                if failures.load(Ordering::Relaxed) >= give_up {
                    pb.inc(1);
                    return Err(format!("skipped: stopped after {give_up} failures"));
                }
                let t0 = Instant::now();
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    open_client(target, url, i, opts.source_ips),
                )
                .await
                .unwrap_or_else(|_| Err("timeout: no handshake within 10 s".into()));
                if r.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if r.is_ok()
                    && let Ok(mut h) = handshakes.lock()
                {
                    h.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                }
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(opts.handshake_concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let h = handshakes.into_inner().unwrap_or_else(|p| p.into_inner());
    (results, seconds, h)
}

pub(super) async fn connect_phase(target: &Target, opts: &LoadOptions) -> Connected {
    let (results, seconds, handshakes) = open_all(target, &target.ws_url, opts).await;
    let mut errors = BTreeMap::new();
    let mut open = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(ws) => open.push(ws),
            Err(e) => *errors.entry(e).or_insert(0) += 1,
        }
    }
    let connected = open.len();
    let pb = bar(!opts.quiet, connected as u64, "identify");
    let identified: Vec<Result<(String, ClientWs), String>> = futures_util::stream::iter(open)
        .map(|mut ws| {
            let pb = &pb;
            async move {
                let r = identify(&mut ws).await.map(|id| (id, ws));
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(opts.handshake_concurrency.max(1))
        .collect()
        .await;
    pb.finish_and_clear();
    let mut clients = Vec::with_capacity(identified.len());
    for r in identified {
        match r {
            Ok(c) => clients.push(c),
            Err(e) => *errors.entry(e).or_insert(0) += 1,
        }
    }
    let handshake = Latency::of(&handshakes);
    Connected {
        report: ConnectReport {
            requested: opts.clients,
            connected,
            identified: clients.len(),
            failed: opts.clients - clients.len(),
            errors,
            seconds,
            per_second: connected as f64 / seconds.max(1e-9),
            handshake,
        },
        clients,
    }
}
