//! The process around the requests: health probes for orchestrators, graceful shutdown that
//! finishes in-flight streams up to `SHUTDOWN_GRACE_MS`, and a `kill -9` under load after which
//! the usage database opens and holds every record older than the documented flush window.
//!
//! All on 127.0.0.1; every wait is bounded; no assertion is on elapsed time (the crash test's
//! "settled" requests are those that finished ten flush windows before the kill).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::ChildGuard;

use common::tmp::TempDir;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::relay::{config, first_model_of, sse_payloads};
use llm_relay::relay::AppState;
use llm_relay::store::UsageQuery;
use llm_relay::store::embedded::RedbStore;
use llm_relay::usage::query::Filter;
use llm_relay::usage::record::UsageSettings;
use llm_relay::usage::recorder::{FLUSH_INTERVAL, Recorder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

fn chunk(data: &str) -> Vec<u8> {
    let event = format!("data: {data}\n\n");
    format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
}

fn text_event(text: &str) -> String {
    json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}})
    .to_string()
}

/// A one-shot upstream that streams "first", waits for `release` (or for ever without one),
/// then "second", a stop and `[DONE]`.
async fn paced_upstream(release: Option<oneshot::Receiver<()>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf).await.unwrap();
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&chunk(&text_event("first"))).await.unwrap();
        sock.flush().await.unwrap();
        match release {
            Some(rx) => {
                let _ = rx.await;
            }
            None => {
                // Until llm-relay hangs up.
                let _ = sock.read(&mut buf).await;
                return;
            }
        }
        let _ = sock.write_all(&chunk(&text_event("second"))).await;
        let fin = json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
        let _ = sock.write_all(&chunk(&fin.to_string())).await;
        let _ = sock.write_all(&chunk("[DONE]")).await;
        let _ = sock.write_all(b"0\r\n\r\n").await;
        let _ = sock.flush().await;
    });
    format!("http://{addr}/v1")
}

/// An in-process server over `base` with a recorder, and the handles to stop it and see it end.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    recorder: Arc<Recorder>,
    store: Arc<RedbStore>,
}

/// `threads`: `None` serves through `server::run` on the test's runtime (the library seam),
/// `Some(n)` through `server::run_threads` on `n` threads of their own, as the binary does.
async fn server(dir: &TempDir, base: String, grace: Duration, threads: Option<usize>) -> Server {
    let store = Arc::new(RedbStore::open(&dir.0).unwrap());
    let recorder = Recorder::start(store.clone(), UsageSettings::default(), Vec::new()).unwrap();
    let mut cfg = config(&[("openai", base)]);
    cfg.shutdown_grace = grace;
    let state = AppState::new(cfg).unwrap().with_recorder(recorder.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let done = match threads {
        None => tokio::spawn(llm_relay::server::run(listener, state, async {
            let _ = rx.await;
        })),
        Some(n) => {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                let _ = rx.await;
                let _ = stop_tx.send(true);
            });
            tokio::spawn(llm_relay::server::run_threads(listener, state, n, stop_rx))
        }
    };
    Server {
        addr,
        stop: Some(tx),
        done,
        recorder,
        store,
    }
}

/// Open a stream through `s` and read it up to the upstream's first event: (the response, still
/// streaming; the text read so far).
async fn stream_until_first(s: &Server) -> (reqwest::Response, String) {
    let mut resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", s.addr))
        .json(&json!({"model": first_model_of("openai"), "stream": true,
            "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = common::relay::read_until(&mut resp, "first", WAIT).await;
    (resp, seen)
}

#[tokio::test]
async fn health_probes_report_liveness_and_store_readiness() {
    let dir = TempDir::new("health");
    let s = server(&dir, "http://127.0.0.1:9/v1".into(), WAIT, None).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", s.addr);
    for path in ["/health/live", "/health/ready"] {
        let resp = http.get(url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
        assert_eq!(http.head(url(path)).send().await.unwrap().status(), 200);
    }
    // The usage writer stops (what a failed database looks like to requests): not ready, but
    // still live (a restart would not be the fix for every cause; the orchestrator decides).
    let r = s.recorder.clone();
    tokio::task::spawn_blocking(move || r.shutdown())
        .await
        .unwrap();
    let resp = http.get(url("/health/ready")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["status"], "unavailable");
    assert!(v["error"].as_str().unwrap().contains("writer"), "{v}");
    assert_eq!(
        http.get(url("/health/live")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_streams_and_stops_accepting() {
    graceful_shutdown_finishes_in_flight_streams(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_on_server_threads_finishes_in_flight_streams_and_stops_accepting() {
    graceful_shutdown_finishes_in_flight_streams(Some(3)).await;
}

async fn graceful_shutdown_finishes_in_flight_streams(threads: Option<usize>) {
    let dir = TempDir::new("graceful");
    let (release, rx) = oneshot::channel();
    // A grace period longer than every wait here: the server must stop when its last stream
    // ends (idle keep-alive connections included), not at the deadline.
    let mut s = server(&dir, paced_upstream(Some(rx)).await, WAIT * 3, threads).await;
    let (mut resp, mut seen) = stream_until_first(&s).await;
    // SIGTERM's equivalent: the server stops accepting while the stream is in flight.
    s.stop.take().unwrap().send(()).unwrap();
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if tokio::net::TcpStream::connect(s.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after the shutdown began");
    assert!(!s.done.is_finished(), "returned with a stream in flight");
    // The upstream finishes: the client gets the whole stream.
    release.send(()).unwrap();
    while let Some(c) = tokio::time::timeout(WAIT, resp.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        seen.push_str(&String::from_utf8_lossy(&c));
    }
    let payloads = sse_payloads(&seen);
    assert!(seen.contains("second"), "{seen}");
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    tokio::time::timeout(WAIT, s.done)
        .await
        .expect("the server did not stop after its last stream")
        .unwrap()
        .unwrap();
    let r = s.recorder.clone();
    tokio::task::spawn_blocking(move || r.shutdown())
        .await
        .unwrap();
    let rec = s.store.recent(&Filter::default(), 1).unwrap().remove(0);
    assert!(rec.complete && rec.error.is_none(), "{rec:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_cuts_streams_at_the_grace_deadline_and_records_them() {
    graceful_shutdown_cuts_streams_at_the_deadline(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_on_server_threads_cuts_streams_at_the_grace_deadline() {
    graceful_shutdown_cuts_streams_at_the_deadline(Some(2)).await;
}

async fn graceful_shutdown_cuts_streams_at_the_deadline(threads: Option<usize>) {
    let dir = TempDir::new("deadline");
    let mut s = server(
        &dir,
        paced_upstream(None).await,
        Duration::from_millis(300),
        threads,
    )
    .await;
    let (_resp, _) = stream_until_first(&s).await;
    s.stop.take().unwrap().send(()).unwrap();
    // The upstream never finishes: the server stops anyway, after its grace period.
    tokio::time::timeout(WAIT, s.done)
        .await
        .expect("the server outlived its shutdown grace period")
        .unwrap()
        .unwrap();
    let r = s.recorder.clone();
    tokio::task::spawn_blocking(move || r.shutdown())
        .await
        .unwrap();
    let rec = s.store.recent(&Filter::default(), 1).unwrap().remove(0);
    assert!(!rec.complete, "{rec:?}");
    assert_eq!(rec.input_tokens, 4, "the partial usage is kept");
}

/// Start the binary on `dir` over `upstream`; its address from the "listening" log line, and
/// the log lines that follow it (stderr, collected as they come).
fn spawn(
    dir: &TempDir,
    upstream: &str,
    env: &[(&str, &str)],
) -> (ChildGuard, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_llm-relay"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("ADMIN_ENABLED", "false")
        .env("OPENAI_API_KEY", "sk-test-crash")
        .env("OPENAI_BASE_URL", format!("{upstream}/v1"))
        .env("DATA_DIR", &dir.0)
        .env("RUST_LOG", "warn,llm_relay=info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("llm-relay exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listen=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (ChildGuard(child), format!("http://{addr}"), log)
}

/// The access-log lines of `log`, waiting up to `wait` for the first one.
async fn access_lines(log: &Mutex<Vec<String>>, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    loop {
        let access: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" llm_relay::usage: request "))
            .cloned()
            .collect();
        if !access.is_empty() || Instant::now() >= deadline {
            return access;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn chat(http: &reqwest::Client, base: &str) -> bool {
    http.post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": first_model_of("openai"),
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_keeps_every_record_older_than_the_flush_window() {
    let dir = TempDir::new("crash");
    let fake = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})))
        .mount(&fake)
        .await;
    let (mut child, base, _) = spawn(&dir, &fake.uri(), &[("LOG_FLUSH_MS", "100")]);
    let http = reqwest::Client::new();
    // Load from 4 clients; each remembers when its successful requests finished.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (http, base, stop) = (http.clone(), base.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if chat(&http, &base).await {
                    done.push(Instant::now());
                }
            }
            done
        }));
    }
    // Run long enough for many records to be older than the flush window at the kill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.0.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    let killed = Instant::now();
    child.0.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    let mut finished = Vec::new();
    for c in clients {
        finished.extend(c.await.unwrap());
    }
    // Ten flush windows leave room for the commit itself on a busy machine.
    let settled = finished
        .iter()
        .filter(|t| killed.duration_since(**t) > FLUSH_INTERVAL * 10)
        .count() as u64;
    assert!(settled > 0, "no request finished before the kill");
    let store = RedbStore::open(&dir.0).expect("the database opens after kill -9");
    let stored = store.summary(&Filter::default()).unwrap().requests;
    eprintln!(
        "kill -9: {} requests answered, {settled} settled before the window, {stored} stored",
        finished.len()
    );
    assert!(
        stored >= settled && stored <= finished.len() as u64 + 4,
        "{stored} records; {settled} requests settled before the kill, {} answered",
        finished.len()
    );
    drop(store);

    // A restart on the same DATA_DIR serves, is ready, records and shuts down cleanly. Its log
    // lines are flushed only every 10 minutes: the access-log line comes out at the shutdown.
    let (mut child, base, log) = spawn(&dir, &fake.uri(), &[("LOG_FLUSH_MS", "600000")]);
    let ready = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    // The container HEALTHCHECK command agrees (and fails once the server is gone, below).
    let port = base.rsplit(':').next().unwrap().to_string();
    let health = || {
        Command::new(env!("CARGO_BIN_EXE_llm-relay"))
            .arg("health")
            .env_clear()
            .env("PORT", &port)
            .env("ADMIN_ENABLED", "false")
            .output()
            .unwrap()
    };
    assert!(health().status.success());
    assert!(chat(&http, &base).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        access_lines(&log, Duration::ZERO).await,
        Vec::<String>::new(),
        "buffered until the flush"
    );
    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.0.wait().unwrap().success());
    // The access log line, as an operator's log pipeline sees it (stderr is no terminal: no
    // colour codes; `name=value` fields, strings quoted as the default formatter does).
    let access = access_lines(&log, Duration::from_secs(5)).await;
    let lines = log.lock().unwrap().clone();
    assert_eq!(access.len(), 1, "{lines:#?}");
    let line = &access[0];
    for part in [
        " INFO llm_relay::usage: request method=\"POST\" path=\"/v1/chat/completions\" model=",
        " provider=openai routed=",
        " status=200 latency_ms=",
        " prompt_tokens=3 completion_tokens=2 complete=true",
    ] {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    // Only a stream cut before its usage says `tokens_estimated=true`.
    assert!(!line.contains("tokens_estimated"), "{line}");
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "{lines:#?}");
    let gone = health();
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot connect"));
    let store = RedbStore::open(&dir.0).unwrap();
    assert_eq!(
        store.summary(&Filter::default()).unwrap().requests,
        stored + 1
    );
    drop(store);
    // With the default flush interval the line comes out while the server runs.
    let (_child, base, log) = spawn(&dir, &fake.uri(), &[("LOG_FLUSH_MS", "100")]);
    assert!(chat(&http, &base).await);
    assert_eq!(access_lines(&log, Duration::from_secs(5)).await.len(), 1);
}

/// Each API server thread listens on a socket of its own (SO_REUSEPORT), so the kernel spreads
/// new connections over the threads instead of one thread accepting a whole burst.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn each_server_thread_listens_on_a_socket_of_its_own() {
    let dir = TempDir::new("reuseport");
    let (_child, base, _) = spawn(&dir, "http://127.0.0.1:9", &[("SERVER_THREADS", "3")]);
    let port = base.rsplit(':').next().unwrap();
    let port = format!("{:04X}", port.parse::<u16>().unwrap());
    // /proc/net/tcp: `sl local_address rem_address st ...`, address `IP:PORT` in hex, st 0A = LISTEN.
    // The threads open theirs right after the "listening" line: wait for them.
    let listening = || {
        let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let n = tcp
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&format!(":{port}")) && f[3] == "0A"
            })
            .count();
        (n, tcp)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (n, tcp) = loop {
        let (n, tcp) = listening();
        if n >= 3 || Instant::now() > deadline {
            break (n, tcp);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(n, 3, "listening sockets on port {port}:\n{tcp}");
    // SO_REUSEPORT does not let a second server start on the taken port (it would silently take
    // part of the connections): it stops with the plain bind error.
    let other = TempDir::new("reuseport-2");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-relay"));
    cmd.env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", base.rsplit(':').next().unwrap())
        .env("ADMIN_ENABLED", "false")
        .env("DATA_DIR", &other.0);
    let (status, log) =
        common::process::run_logged(cmd, &other.0.join("second.log"), Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()) && log.contains("cannot listen on"),
        "{status:?}: {log}"
    );
    // And every one of them serves.
    let http = reqwest::Client::new();
    for _ in 0..12 {
        let r = http
            .get(format!("{base}/health/live"))
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}
