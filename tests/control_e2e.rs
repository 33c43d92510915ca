//! Control and dataplanes as separate processes: register the probe
//! plugin, bind it, see the policy reach a dataplane's traffic; kill -9
//! control mid-stream and restart it; kill -9 a dataplane mid-stream; then
//! prove from the durable log, by each writer's sequence numbers, that no
//! committed evidence record was lost or duplicated.

mod control_support;
mod plugin_support;

use std::collections::BTreeMap;
use std::time::Duration;

use control_support::{Setup, maybe_run_role, now_ns};
use odock_control::log::{FileStorage, IoMode, Log, LogConfig};
use odock_dataplane::evidence::{SequenceCheck, decode};
use odock_dataplane::plugin::Pin;
use odock_suite::watchdog;
use serde_json::json;

/// Runs a child role when this binary is re-executed as one.
#[test]
fn role_child() {
    maybe_run_role();
}

fn verdict_after(p: &control_support::Proc, verdict: &str, after_ns: u64) -> (u64, u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = p.lines_with(&format!("verdict {verdict} "));
        for l in &lines {
            let at: u64 = l
                .split("at_ns=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let policy: u64 = l.split("policy=").nth(1).unwrap().parse().unwrap();
            if at >= after_ns {
                return (at, policy);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no verdict {verdict} after {after_ns}: {:?}",
            control_support::tail(&p.lines)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn policy_reaches_traffic_and_kill_9_loses_no_committed_evidence() {
    if std::env::var("ODOCK_TEST_ROLE").is_ok() {
        return;
    }
    watchdog(Duration::from_secs(240), || {
        let probe = plugin_support::c_plugin("probe", "tests/plugin_sources/probe.c", &[]);
        let sha = Pin::of_file(&probe).unwrap().to_string();
        let setup = Setup::new();
        let mut control = setup.control(None);
        let client = setup.client();
        let mut dp1 = setup.dataplane(None);
        dp1.wait_line("verdict continue", Duration::from_secs(10));

        // Register and bind the probe plugin, disabled at first.
        let a = client
            .request(
                "POST",
                "/v1/plugins",
                Some(
                    json!({"name": "probe", "path": probe, "sha256": sha})
                        .to_string()
                        .as_bytes(),
                ),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{}", a.text());
        let info = client
            .request("GET", "/v1/plugins/probe", None)
            .unwrap()
            .json();
        assert!(
            info["info"]["gates"]
                .as_array()
                .unwrap()
                .contains(&json!("request")),
            "{info}"
        );
        assert_eq!(
            info["info"]["abi"].as_str().unwrap().split('.').next(),
            Some("1")
        );
        let requested = info["info"]["requested"].clone();
        let binding = json!({
            "name": "guard",
            "plugin": "probe",
            "priority": {"request": 10},
            "capabilities": requested,
            "config_text": "block:403:blocked by probe",
            "time_budget_ms": 1000,
        });
        let a = client
            .request("POST", "/v1/bindings", Some(binding.to_string().as_bytes()))
            .unwrap();
        assert_eq!(a.status, 201, "{}", a.text());

        // Enable it: the dataplane's traffic is blocked from the new version on.
        let t0 = now_ns();
        let a = client
            .request("POST", "/v1/bindings/guard/enable", None)
            .unwrap();
        assert_eq!(a.status, 200, "{}", a.text());
        let enabled_version = a.json()["version"].as_u64().unwrap();
        let (at, policy) = verdict_after(&dp1, "block", t0);
        assert!(policy >= enabled_version);
        eprintln!(
            "policy push: enable sent -> first blocked frame: {:.1} ms",
            at.saturating_sub(t0) as f64 / 1e6
        );

        // Control sees the dataplane: its policy version, its ring, and the
        // probe's counters at the request gate.
        let dp1_pid: u64 = dp1
            .last_line("ready pid=")
            .unwrap()
            .trim_start_matches("ready pid=")
            .parse()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v = client
                .request("GET", "/v1/dataplanes", None)
                .unwrap()
                .json();
            let me = v
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["pid"] == dp1_pid)
                .cloned();
            let calls = me.as_ref().and_then(|d| {
                d["plugins"]
                    .as_array()?
                    .iter()
                    .find(|p| p["plugin"] == "probe" && p["gate"] == "request")
                    .and_then(|p| p["counters"]["calls"].as_u64())
            });
            if let (Some(d), Some(calls)) = (&me, calls)
                && calls > 0
                && d["policy_version"].as_u64() >= Some(enabled_version)
                && d["healthy"] == true
                && d["rings"].as_array().is_some_and(|r| r.len() == 1)
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "dataplane view: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The same counters in /metrics.
        let metrics = client.request("GET", "/metrics", None).unwrap().text();
        let calls_line = format!(
            "odock_dataplane_plugin_total{{pid=\"{dp1_pid}\",plugin=\"probe\",gate=\"request\",counter=\"calls\"}} "
        );
        let calls: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(calls_line.as_str()))
            .unwrap_or_else(|| panic!("no {calls_line:?} in {metrics}"))
            .parse()
            .unwrap();
        assert!(calls > 0, "{metrics}");
        assert!(metrics.contains(&format!("odock_dataplane_healthy{{pid=\"{dp1_pid}\"}} 1")));

        // kill -9 control mid-stream; the dataplane keeps its policy and
        // keeps writing evidence into its ring.
        control.kill9();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            dp1.last_line("verdict")
                .unwrap()
                .starts_with("verdict block"),
            "last policy kept"
        );
        let mut control = setup.control(None);

        // Disable through the restarted control: traffic continues again.
        let t1 = now_ns();
        let a = client
            .request("POST", "/v1/bindings/guard/disable", None)
            .unwrap();
        assert_eq!(a.status, 200, "{}", a.text());
        let (at, _) = verdict_after(&dp1, "continue", t1);
        eprintln!(
            "policy push: disable -> first continued frame: {:.1} ms",
            at.saturating_sub(t1) as f64 / 1e6
        );

        // kill -9 the dataplane mid-stream; start another that runs to the end.
        std::thread::sleep(Duration::from_millis(200));
        dp1.kill9();
        let dp1_committed: u64 = dp1
            .last_line("committed seq=")
            .unwrap()
            .trim_start_matches("committed seq=")
            .parse()
            .unwrap();
        let mut dp2 = setup.dataplane(Some(5_000));
        let done = dp2.wait_line("done", Duration::from_secs(60));
        let dp2_next: u64 = done.trim_start_matches("done next_seq=").parse().unwrap();
        let _ = dp2.child.wait();

        // Let control drain what is left, then stop it cleanly.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rings = std::fs::read_dir(setup.run.join("evidence"))
                .unwrap()
                .count();
            if rings == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rings of dead dataplanes not drained and retired"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The killed dataplane's stale status is gone once its ring is.
        let v = client
            .request("GET", "/v1/dataplanes", None)
            .unwrap()
            .json();
        assert!(
            v.as_array().unwrap().iter().all(|d| d["pid"] != dp1_pid),
            "{v}"
        );
        let metrics = client.request("GET", "/metrics", None).unwrap().text();
        eprintln!(
            "after restart: {}",
            metrics
                .lines()
                .find(|l| l.starts_with("odock_evidence_duplicates_skipped_total"))
                .unwrap_or("no duplicates metric")
        );
        // The evidence is queryable over the socket too.
        let a = client
            .request("GET", "/v1/evidence?kind=control_change", None)
            .unwrap();
        assert_eq!(a.status, 200);
        assert!(a.text().lines().count() >= 4, "{}", a.text());
        control.terminate();

        // Read the durable log and check every writer's sequence.
        let storage = FileStorage::new(&setup.storage.join("evidence"), IoMode::Pwrite).unwrap();
        let (log, recovery) = Log::open(storage, LogConfig::default()).unwrap();
        assert!(recovery.corrupt.is_empty(), "{:?}", recovery.corrupt);
        let mut checks: BTreeMap<(u32, u32), (SequenceCheck, u64, Vec<String>)> = BTreeMap::new();
        log.snapshot()
            .scan(log.storage(), 0, |entry| {
                let r = decode(&entry.payload).expect("every stored record decodes");
                let key = (entry.origin.ring, r.stamp.worker);
                let c = checks.entry(key).or_default();
                if let Err(e) = c.0.observe(&r) {
                    c.2.push(e.to_string());
                }
                c.1 = r.stamp.sequence;
                true
            })
            .unwrap();
        for (key, (check, last, problems)) in &checks {
            assert!(problems.is_empty(), "writer {key:?}: {problems:?}");
            // Gap records are allowed: a ring that filled while control was
            // down dropped records and said so; those were never committed.
            eprintln!(
                "writer {key:?}: {} records, last sequence {last}, {} reported lost by gap records",
                check.records(),
                check.lost()
            );
        }
        // Numbered writers (worker 1): one per dataplane ring.
        let numbered: Vec<_> = checks
            .iter()
            .filter(|((ring, w), _)| *ring != 0 && *w == 1)
            .collect();
        assert_eq!(
            numbered.len(),
            2,
            "both dataplanes' numbered streams are in the log"
        );
        let lasts: Vec<u64> = numbered.iter().map(|(_, (_, last, _))| *last).collect();
        assert!(
            lasts.contains(&(dp2_next - 1)),
            "the finished dataplane's every record is in the log: {lasts:?}, next {dp2_next}"
        );
        assert!(
            lasts
                .iter()
                .any(|&l| l >= dp1_committed && l != dp2_next - 1)
                || lasts.iter().filter(|&&l| l >= dp1_committed).count() == 2,
            "the killed dataplane's committed records are all in the log: {lasts:?}, committed up to {dp1_committed}"
        );
        // Control's own changes: versions 1.. in order.
        let (ctl, _, _) = &checks[&(0, u32::MAX)];
        assert!(ctl.records() >= 4);
    });
}
