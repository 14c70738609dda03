//! `cargo bench -p selfdiffusion-server --bench scale_out`: the scale-out deployment on
//! loopback (PostgreSQL, `s3s-fs`, the real binary, the tiny model), measured as a client sees
//! it: jobs per minute through one worker and through two, then the latency of
//! `GET /v1/generations/{id}` under 200 concurrent pollers for 30 s against one API node and
//! against two. Prints a table and one JSON line, with the CPU: every process shares this
//! machine's cores with the load generator, so compare figures from the same machine only.
//! `SCALE_OUT_BENCH_SECONDS` and `SCALE_OUT_BENCH_JOBS` shorten it (e.g. for a smoke run).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{token, Cluster};
use serde_json::{json, Value};

/// Concurrent pollers.
const POLLERS: usize = 200;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Submits `jobs` jobs (4 users, through `nodes` in turn) and waits for all; jobs per minute.
async fn throughput(nodes: &[String], tokens: &[String], jobs: usize) -> f64 {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..jobs {
        let node = &nodes[i % nodes.len()];
        let token = &tokens[i % tokens.len()];
        let body = json!({ "prompt": format!("a harbour, take {i}"), "steps": 4,
                           "width": 64, "height": 64, "seed": i });
        ids.push((create(&client, node, token, &body).await, token, node));
    }
    for (id, token, node) in &ids {
        wait_succeeded(&client, node, token, id).await;
    }
    jobs as f64 / started.elapsed().as_secs_f64() * 60.0
}

/// `POST /v1/generations` of `body` on `node`; returns the job id.
async fn create(client: &reqwest::Client, node: &str, token: &str, body: &Value) -> String {
    let response = client
        .post(format!("{node}/v1/generations"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Polls job `id` on `node` until it succeeded.
async fn wait_succeeded(client: &reqwest::Client, node: &str, token: &str, id: &str) {
    loop {
        let job: Value = client
            .get(format!("{node}/v1/generations/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match job["status"].as_str() {
            Some("succeeded") => return,
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => panic!("job {id}: {job}"),
        }
    }
}

/// Latencies seen by [`POLLERS`] clients polling `id` for `seconds` through `nodes` in turn.
async fn poll_latency(nodes: &[String], token: &str, id: &str, seconds: u64) -> Latency {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(POLLERS)
        .build()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..POLLERS)
        .map(|n| {
            let url = format!("{}/v1/generations/{id}", nodes[n % nodes.len()]);
            let (client, token) = (client.clone(), token.to_owned());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut errors = 0usize;
                while Instant::now() < end {
                    let at = Instant::now();
                    let ok = match client.get(&url).bearer_auth(&token).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        seen.push(at.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (seen, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (seen, failed) = task.await.unwrap();
        all.extend(seen);
        errors += failed;
    }
    all.sort();
    let at = |q: f64| all[((all.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    Latency {
        requests: all.len(),
        errors,
        per_second: all.len() as f64 / seconds as f64,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

#[derive(Debug)]
struct Latency {
    requests: usize,
    errors: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let Some(cluster) = Cluster::start(10).await else {
            eprintln!(
                "the scale-out bench needs PostgreSQL and s3s-fs (scripts/test.sh installs both)"
            );
            return;
        };
        let seconds = env_number("SCALE_OUT_BENCH_SECONDS", 30);
        let jobs = env_number("SCALE_OUT_BENCH_JOBS", 40) as usize;
        let tokens: Vec<String> = (1..=4).map(token).collect();
        let (_a, a) = cluster.api("api-a", 900, false).await;
        let _first = cluster.worker("worker-1").await;
        let one_worker = throughput(std::slice::from_ref(&a), &tokens, jobs).await;
        let _second = cluster.worker("worker-2").await;
        let two_workers = throughput(std::slice::from_ref(&a), &tokens, jobs).await;

        // A finished job, polled as clients poll.
        let client = reqwest::Client::new();
        let polled =
            json!({ "prompt": "a polled lighthouse", "steps": 2, "width": 64, "height": 64 });
        let id = create(&client, &a, &tokens[0], &polled).await;
        wait_succeeded(&client, &a, &tokens[0], &id).await;
        let one_node = poll_latency(std::slice::from_ref(&a), &tokens[0], &id, seconds).await;
        let (_b, b) = cluster.api("api-b", 900, false).await;
        let nodes = [a, b];
        let two_nodes = poll_latency(&nodes, &tokens[0], &id, seconds).await;

        let cpu = cpu_model();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!("scale-out on {cpu} ({threads} threads), tiny model, 64², 4 steps, {jobs} jobs");
        println!("  jobs per minute, 1 worker:  {one_worker:.1}");
        println!("  jobs per minute, 2 workers: {two_workers:.1}");
        for (name, l) in [("1 API node ", &one_node), ("2 API nodes", &two_nodes)] {
            println!(
                "  GET /v1/generations/{{id}}, {POLLERS} pollers for {seconds} s, {name}: \
                 p50 {:.1} ms, p99 {:.1} ms, {:.0} requests/s, {} errors",
                l.p50_ms, l.p99_ms, l.per_second, l.errors
            );
        }
        let figures = json!({
            "bench": "scale_out", "cpu": cpu, "threads": threads, "jobs": jobs,
            "jobs_per_minute": { "workers_1": one_worker, "workers_2": two_workers },
            "poll": {
                "pollers": POLLERS, "seconds": seconds,
                "nodes_1": { "p50_ms": one_node.p50_ms, "p99_ms": one_node.p99_ms,
                             "requests": one_node.requests, "errors": one_node.errors },
                "nodes_2": { "p50_ms": two_nodes.p50_ms, "p99_ms": two_nodes.p99_ms,
                             "requests": two_nodes.requests, "errors": two_nodes.errors },
            },
        });
        println!("{figures}");
        drop(cluster);
    });
}
