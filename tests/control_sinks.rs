//! Evidence sinks: a JSON lines file fed by a real control process across
//! a clean restart, a webhook against a local HTTP server that fails, and
//! bad sink config refused at start-up naming the key.

mod control_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_support::{Proc, Setup, maybe_run_role};
use odock_control::client::Client;
use odock_control::config::Config;
use odock_control::log::{FileStorage, IoMode, Log, LogConfig, Origin};
use odock_control::sink::{Sink, SinkConfig, SinkFilter, SinkKind, Url, cursor_path, read_cursor};
use odock_dataplane::evidence::{self, Evidence, Kind, Stamp};
use odock_suite::watchdog;
use serde_json::Value;

/// Runs a child role when this binary is re-executed as one.
#[test]
fn role_child() {
    maybe_run_role();
}

fn is_child() -> bool {
    std::env::var("ODOCK_TEST_ROLE").is_ok()
}

fn status(c: &Client) -> Value {
    c.request("GET", "/v1/status", None).unwrap().json()
}

/// Waits (bounded: a hang fails, nothing is timed) until `cond` holds.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every ring is drained and retired and the sink has passed
/// every committed record.
fn wait_caught_up(c: &Client) {
    wait_until("rings drained and retired", Duration::from_secs(60), || {
        c.request("GET", "/v1/dataplanes", None)
            .unwrap()
            .json()
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    wait_until("sink caught up", Duration::from_secs(60), || {
        let s = status(c);
        s["sinks"][0]["lag"] == 0
            && s["log"]["committed_index"] == s["log"]["next_index"]
            && s["sinks"][0]["cursor"] == s["log"]["next_index"]
    });
}

fn log_indexes(lines: &str) -> Vec<u64> {
    lines
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["log_index"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn jsonl_sink_gets_every_committed_record_once_across_a_clean_restart() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(240), || {
        let s = Setup::new();
        let out = s.dir.path().join("siem").join("evidence.jsonl");
        let extra = format!(
            "[[sinks]]\nname = \"siem\"\nkind = \"jsonl\"\npath = {:?}\nbatch_size = 64\nmax_bytes = 1073741824\n",
            out.display().to_string()
        );
        let mut control = s.control_with(None, &extra);
        let c = s.client();
        // A stream of numbered records; control is stopped (SIGTERM) and
        // started again in the middle of it.
        let mut dp = s.dataplane(Some(20_000));
        wait_until("the sink delivered some", Duration::from_secs(60), || {
            status(&c)["sinks"][0]["delivered"].as_u64().unwrap_or(0) > 500
        });
        let a = c
            .request(
                "POST",
                "/v1/scopes",
                Some(br#"{"name": "acme", "tenant": "acme"}"#),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{}", a.text());
        control.terminate();
        let before = std::fs::read_to_string(&out).unwrap();
        let cursor = read_cursor(&cursor_path(&s.storage, "siem")).unwrap();
        assert_eq!(
            log_indexes(&before).last().map(|i| i + 1),
            Some(cursor),
            "the cursor is just past the last line written"
        );
        let control = s.control_with(None, &extra);
        let a = c
            .request(
                "POST",
                "/v1/scopes",
                Some(br#"{"name": "beta", "tenant": "beta"}"#),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{}", a.text());
        dp.wait_line("done", Duration::from_secs(120));
        let _ = dp.child.wait();
        wait_caught_up(&c);
        let st = status(&c);
        assert_eq!(st["sinks"][0]["failed"], 0, "{st}");
        assert_eq!(st["sinks"][0]["last_error"], Value::Null, "{st}");

        let got = log_indexes(&std::fs::read_to_string(&out).unwrap());
        let export = c
            .request("GET", "/v1/evidence?limit=18446744073709551615", None)
            .unwrap();
        let all = log_indexes(&export.text());
        assert!(all.len() > 20_000, "{}", all.len());
        assert_eq!(got, all, "every committed record once, in log order");
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(
            cursor > 0 && (cursor as usize) < all.len(),
            "restart in the middle: {cursor}"
        );

        // The numbered stream: sequence 0..20000 each once.
        let mut seqs = BTreeSet::new();
        for line in std::fs::read_to_string(&out).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["request_id"] == "numbered" {
                assert!(seqs.insert(v["sequence"].as_u64().unwrap()), "{line}");
            }
        }
        assert_eq!(seqs.len(), 20_000);
        assert_eq!(seqs.last(), Some(&19_999));

        let metrics = c.request("GET", "/metrics", None).unwrap().text();
        assert!(
            metrics.contains(&format!(
                "odock_sink_delivered_total{{sink=\"siem\",kind=\"jsonl\"}} {}",
                got.len() - cursor as usize
            )),
            "delivered since the restart: {metrics}"
        );
        assert!(metrics.contains("odock_sink_lag_records{sink=\"siem\",kind=\"jsonl\"} 0"));
        drop(control);
    });
}

#[test]
fn jsonl_sink_after_kill_9_has_every_committed_record_at_least_once_in_order() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(240), || {
        let s = Setup::new();
        let out = s.dir.path().join("siem.jsonl");
        let extra = format!(
            "[[sinks]]\nname = \"siem\"\nkind = \"jsonl\"\npath = {:?}\nbatch_size = 50\n",
            out.display().to_string()
        );
        let mut control = s.control_with(None, &extra);
        let c = s.client();
        let mut dp = s.dataplane(Some(15_000));
        wait_until("the sink delivered some", Duration::from_secs(60), || {
            status(&c)["sinks"][0]["delivered"].as_u64().unwrap_or(0) > 1_000
        });
        control.kill9();
        let cursor = read_cursor(&cursor_path(&s.storage, "siem")).unwrap();
        let _control = s.control_with(None, &extra);
        dp.wait_line("done", Duration::from_secs(120));
        let _ = dp.child.wait();
        wait_caught_up(&c);

        let got = log_indexes(&std::fs::read_to_string(&out).unwrap());
        let export = c
            .request("GET", "/v1/evidence?limit=18446744073709551615", None)
            .unwrap();
        let all = log_indexes(&export.text());
        assert!(all.len() >= 15_000, "{}", all.len());
        // In log order, except that a batch delivered but not yet in the
        // cursor when control died is delivered again (from the cursor).
        let mut replays = 0;
        for w in got.windows(2) {
            if w[1] != w[0] + 1 {
                replays += 1;
                assert!(w[1] <= w[0] && w[1] >= cursor, "{w:?}, cursor {cursor}");
            }
        }
        assert!(replays <= 1, "{replays} replays");
        let unique: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(
            unique.into_iter().collect::<Vec<_>>(),
            all,
            "every committed record at least once"
        );
    });
}

/// An HTTP server answering 503 to the first `fail` posts (and closing
/// the connection without an answer on the one after), then 200; it keeps
/// the bodies it answered 200.
struct FlakyServer {
    addr: String,
    bodies: Arc<Mutex<Vec<(u64, String)>>>,
    posts: Arc<Mutex<u64>>,
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<(u64, String)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    let mut first = None;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(line.starts_with("POST /hook "), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "x-odock-first-index" => first = v.trim().parse().ok(),
            "content-type" => assert_eq!(v.trim(), "application/x-ndjson"),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((first?, String::from_utf8(body).ok()?))
}

impl FlakyServer {
    fn start(fail: u64) -> FlakyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(Mutex::new(0u64));
        let (b, p) = (Arc::clone(&bodies), Arc::clone(&posts));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((first, body)) = read_request(&mut stream) else {
                    continue;
                };
                let n = {
                    let mut p = p.lock().unwrap();
                    *p += 1;
                    *p
                };
                if n <= fail {
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndown",
                    );
                } else if n == fail + 1 {
                    // Hang up without an answer.
                    drop(stream);
                } else {
                    b.lock().unwrap().push((first, body));
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                }
            }
        });
        FlakyServer {
            addr,
            bodies,
            posts,
        }
    }
}

fn numbered(seq: u64, plugin: &str) -> Vec<u8> {
    let e = Evidence {
        request_id: "numbered",
        plugin,
        ..Evidence::new(Kind::Plugin)
    };
    let stamp = Stamp {
        sequence: seq,
        timestamp_ns: 1_700_000_000_000_000_000 + seq,
        worker: 1,
    };
    let mut buf = vec![0; evidence::encoded_len(&e)];
    evidence::encode(&stamp, &e, &mut buf).unwrap();
    buf
}

#[test]
fn webhook_sink_that_fails_first_delivers_everything_in_order() {
    if is_child() {
        return;
    }
    watchdog(Duration::from_secs(120), || {
        const FAIL: u64 = 4;
        const N: u64 = 2_500;
        let dir = tempfile::tempdir().unwrap();
        let server = FlakyServer::start(FAIL);
        let storage = FileStorage::new(&dir.path().join("evidence"), IoMode::Auto).unwrap();
        let config = LogConfig {
            segment_bytes: 16 << 10,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(storage, config).unwrap();
        let log = Arc::new(Mutex::new(log));
        let append = |from: u64, to: u64| {
            let mut l = log.lock().unwrap();
            for i in from..to {
                l.append(
                    Origin::default(),
                    &numbered(i, if i % 2 == 0 { "even" } else { "odd" }),
                )
                .unwrap();
            }
            l.commit().unwrap();
        };
        append(0, N / 2);
        let sink = Sink::open(
            SinkConfig {
                name: "hook".into(),
                kind: SinkKind::Webhook {
                    url: Url::parse(&format!("http://{}/hook", server.addr)).unwrap(),
                    timeout: Duration::from_secs(10),
                },
                filter: SinkFilter {
                    plugins: vec!["even".into()],
                    ..SinkFilter::default()
                },
                batch_size: 100,
                backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(40),
            },
            dir.path(),
            Arc::clone(&log),
        )
        .unwrap();
        let status = sink.status();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let runner = std::thread::spawn(move || sink.run(&s));
        // More records arrive while the hook is failing or catching up.
        append(N / 2, N);
        wait_until(
            "every even record delivered",
            Duration::from_secs(90),
            || {
                status.delivered.load(Ordering::Relaxed) == N / 2
                    && status.cursor.load(Ordering::Relaxed) == N
            },
        );
        stop.store(true, Ordering::Relaxed);
        runner.join().unwrap();

        let bodies = server.bodies.lock().unwrap();
        let mut seqs = Vec::new();
        let mut indexes = Vec::new();
        for (first, body) in bodies.iter() {
            let ix = log_indexes(body);
            assert_eq!(ix.first(), Some(first), "x-odock-first-index");
            indexes.extend(ix);
            for l in body.lines() {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["plugin"], "even", "the filter");
                seqs.push(v["sequence"].as_u64().unwrap());
            }
        }
        let want: Vec<u64> = (0..N).step_by(2).collect();
        assert_eq!(seqs, want, "every even record once, in order");
        assert_eq!(indexes, want, "log indexes in order");
        assert!(*server.posts.lock().unwrap() > FAIL + 1);
        assert_eq!(status.failed.load(Ordering::Relaxed), FAIL + 1);
        assert_eq!(status.filtered.load(Ordering::Relaxed), N / 2);
        assert_eq!(status.last_error(), None);
        assert_eq!(read_cursor(&cursor_path(dir.path(), "hook")).unwrap(), N);
    });
}

fn config_error(toml: &str) -> String {
    match Config::parse(toml) {
        Err(e) => e,
        Ok(c) => c.resolve().expect_err(toml).to_string(),
    }
}

#[test]
fn bad_sink_config_is_a_startup_error_naming_the_key() {
    if is_child() {
        return;
    }
    let cases = [
        (
            "[[sinks]]\nname = \"a\"\nkind = \"kafka\"\n",
            "sinks[0].kind",
            "kafka",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"/tmp/a.jsonl\"\n[[sinks]]\nname = \"b\"\nkind = \"webhook\"\n",
            "sinks[1].url",
            "missing",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n[sinks.filter]\ngates = [\"request\", \"lunch\"]\n",
            "sinks[0].filter.gates[1]",
            "lunch",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\n[sinks.filter]\nverdicts = [\"blocked\"]\n",
            "sinks[0].filter.verdicts[0]",
            "blocked",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://siem/\"\n",
            "sinks[0].url",
            "https",
        ),
        ("[[sinks]]\nkind = \"jsonl\"\n", "sinks[0].name", "missing"),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"/tmp/a\"\n[[sinks]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"/tmp/b\"\n",
            "sinks[1].name",
            "another sink",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"/tmp/a\"\nurl = \"http://x/\"\n",
            "sinks[0].url",
            "does not apply",
        ),
        (
            "[[sinks]]\nname = \"a\"\nkind = \"jsonl\"\npath = \"/tmp/a\"\nbatchsize = 3\n",
            "batchsize",
            "unknown field",
        ),
    ];
    for (toml, key, why) in cases {
        let e = config_error(toml);
        assert!(e.contains(key) && e.contains(why), "{toml:?}: {e}");
    }
    // The process refuses to start: exit status 2, the key on stderr, no
    // socket.
    let s = Setup::new();
    let mut p = Proc::spawn("control", &s.control_env(None, cases[2].0));
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    wait_until("stderr read", Duration::from_secs(10), || {
        p.errors
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("sinks[0].filter.gates[1]"))
    });
    assert!(!s.socket().exists());
}

#[test]
fn a_cursor_past_the_end_of_the_log_is_refused_naming_the_file() {
    if is_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = FileStorage::new(&dir.path().join("evidence"), IoMode::Pwrite).unwrap();
    let (log, _) = Log::open(storage, LogConfig::default()).unwrap();
    let log = Arc::new(Mutex::new(log));
    let cursor = cursor_path(dir.path(), "siem");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    std::fs::write(&cursor, "999\n").unwrap();
    let config = SinkConfig {
        name: "siem".into(),
        kind: SinkKind::Jsonl {
            path: dir.path().join("siem.jsonl"),
            max_bytes: 1 << 20,
            keep: 1,
        },
        filter: SinkFilter::default(),
        batch_size: 10,
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    };
    let e = Sink::open(config.clone(), dir.path(), Arc::clone(&log))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("siem.cursor") && e.contains("past the end"),
        "{e}"
    );
    std::fs::write(&cursor, "nine\n").unwrap();
    let e = Sink::open(config, dir.path(), log)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("siem.cursor") && e.contains("not a log index"),
        "{e}"
    );
}
