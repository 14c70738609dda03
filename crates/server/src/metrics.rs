//! `GET /metrics` in the Prometheus text format (`prometheus-client`), for an orchestrator that
//! starts and stops GPU workers on the depth of the queue: jobs by state, jobs finished by
//! outcome, how long jobs waited in the queue and ran, and the live workers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use selfdiffusion_protocol::Status;

/// A job state or outcome, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

fn label(status: Status) -> StateLabel {
    StateLabel {
        state: status.name().to_owned(),
    }
}

/// The server's metrics; the job queue reports into them.
pub struct Metrics {
    registry: Registry,
    jobs: Family<StateLabel, Gauge>,
    finished: Family<StateLabel, Counter>,
    queue_wait: Histogram,
    run_time: Histogram,
    workers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("selfdiffusion");
        let jobs = Family::<StateLabel, Gauge>::default();
        let finished = Family::<StateLabel, Counter>::default();
        // 0.1 s … about 55 min, doubling.
        let queue_wait = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        let run_time = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        let workers = Gauge::default();
        registry.register(
            "jobs",
            "Jobs the server holds, by state (queued, running, succeeded, failed, cancelled)",
            jobs.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs finished since the server started, by outcome",
            finished.clone(),
        );
        registry.register(
            "job_queue_wait_seconds",
            "How long jobs waited in the queue before a worker took them",
            queue_wait.clone(),
        );
        registry.register(
            "job_run_seconds",
            "How long jobs ran on a worker",
            run_time.clone(),
        );
        registry.register("workers", "Generation workers alive", workers.clone());
        Metrics {
            registry,
            jobs,
            finished,
            queue_wait,
            run_time,
            workers,
        }
    }
}

impl Metrics {
    /// A worker took a job that waited `seconds`.
    pub fn started(&self, seconds: f64) {
        self.queue_wait.observe(seconds);
    }

    /// A job ended with `outcome` after running `seconds`.
    pub fn finished(&self, outcome: Status, seconds: f64) {
        self.run_time.observe(seconds);
        self.finished.get_or_create(&label(outcome)).inc();
    }

    /// A worker started (`true`) or stopped.
    pub fn worker(&self, alive: bool) {
        if alive {
            self.workers.inc();
        } else {
            self.workers.dec();
        }
    }

    /// Sets the workers alive (a scale-out API node counts them in the database).
    pub fn set_workers(&self, workers: usize) {
        self.workers.set(workers as i64);
    }

    /// The text exposition, with the jobs held now by state (`counts`).
    pub fn render(&self, counts: &[(Status, usize)]) -> String {
        for &(status, count) in counts {
            self.jobs.get_or_create(&label(status)).set(count as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric() {
        let metrics = Metrics::default();
        metrics.worker(true);
        metrics.worker(true);
        metrics.worker(false);
        metrics.started(0.3);
        metrics.finished(Status::Succeeded, 2.5);
        metrics.finished(Status::Failed, 0.2);
        let text = metrics.render(&[(Status::Queued, 3), (Status::Running, 1)]);
        for line in [
            "selfdiffusion_jobs{state=\"queued\"} 3",
            "selfdiffusion_jobs{state=\"running\"} 1",
            "selfdiffusion_jobs_finished_total{state=\"succeeded\"} 1",
            "selfdiffusion_jobs_finished_total{state=\"failed\"} 1",
            "selfdiffusion_job_queue_wait_seconds_count 1",
            "selfdiffusion_job_run_seconds_count 2",
            "selfdiffusion_workers 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
