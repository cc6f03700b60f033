//! Scheduled jobs, as PocketBase's `app.Cron()`: a registry of jobs by id, each with a cron
//! expression (UTC, minute resolution), run by a ticker at the start of every minute when due,
//! or at once through `POST /api/crons/{id}`.
//!
//! Jobs are node-local: each node runs its own (log cleanup, database upkeep). A subsystem
//! registers a job with [`Crons::add`] while the server is built (`lib.rs`); the snapshot /
//! backup schedule is meant to be one more job registered there (PocketBase calls its job
//! `__pbAutoBackup__`; a cluster-wide schedule would decide inside its job which node acts).
//! A run is a spawned task: a slow job never delays the ticker or another job, and a job
//! still running when it is due again runs again (as in PocketBase).

pub mod schedule;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::Mutex;

pub use schedule::{Schedule, ScheduleError};

type Run = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Job {
    id: String,
    expression: String,
    schedule: Schedule,
    run: Run,
}

/// The node's scheduled jobs; cheap to clone.
#[derive(Clone, Default)]
pub struct Crons {
    jobs: Arc<Mutex<Vec<Job>>>,
}

impl Crons {
    /// Registers a job under `id` (replacing one with the same id) to run `f` on `expression`.
    pub fn add<F, Fut>(&self, id: &str, expression: &str, f: F) -> Result<(), ScheduleError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let schedule = Schedule::parse(expression)?;
        let run: Run = Arc::new(move || Box::pin(f()));
        let mut jobs = self.jobs.lock();
        jobs.retain(|j| j.id != id);
        jobs.push(Job {
            id: id.to_string(),
            expression: expression.to_string(),
            schedule,
            run,
        });
        Ok(())
    }

    /// Removes a job; false when there was none.
    pub fn remove(&self, id: &str) -> bool {
        let mut jobs = self.jobs.lock();
        let before = jobs.len();
        jobs.retain(|j| j.id != id);
        jobs.len() != before
    }

    /// `(id, expression)` of every job, in registration order.
    pub fn list(&self) -> Vec<(String, String)> {
        self.jobs
            .lock()
            .iter()
            .map(|j| (j.id.clone(), j.expression.clone()))
            .collect()
    }

    /// Starts job `id` now, in the background; false when there is no such job.
    pub fn run_now(&self, id: &str) -> bool {
        let run = self
            .jobs
            .lock()
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.run.clone());
        match run {
            Some(run) => {
                spawn_job(id.to_string(), run);
                true
            }
            None => false,
        }
    }

    /// Runs the jobs due in the minute of `now` (each in its own task).
    fn tick(&self, now: chrono::DateTime<chrono::Utc>) {
        let due: Vec<(String, Run)> = self
            .jobs
            .lock()
            .iter()
            .filter(|j| j.schedule.is_due(now))
            .map(|j| (j.id.clone(), j.run.clone()))
            .collect();
        for (id, run) in due {
            spawn_job(id, run);
        }
    }

    /// The ticker: wakes at the start of every UTC minute and runs what is due in it. A late
    /// wake-up (a loaded machine) still ticks the minute it was for; after a long stall (the
    /// process was suspended) it resumes at the current minute rather than replaying hours.
    /// Runs until the task is aborted (the server's shutdown).
    pub async fn run_scheduler(self) {
        let minute = chrono::Duration::minutes(1);
        let mut next = next_minute(chrono::Utc::now());
        loop {
            let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            self.tick(next);
            next += minute;
            let now = chrono::Utc::now();
            if now - next > chrono::Duration::minutes(5) {
                tracing::warn!(behind = %(now - next), "cron ticker stalled; skipping to now");
                next = next_minute(now);
            }
        }
    }
}

/// The start of the minute after `t`.
fn next_minute(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    let secs = t.timestamp().div_euclid(60) * 60 + 60;
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

fn spawn_job(id: String, run: Run) {
    tokio::spawn(async move {
        tracing::debug!(job = %id, "cron job started");
        // A panicking job must not take the ticker with it: it only ends its own task.
        run().await;
        tracing::debug!(job = %id, "cron job finished");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn jobs_run_when_due_or_asked() {
        let crons = Crons::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r = runs.clone();
        crons
            .add("__pbLogsCleanup__", "0 */6 * * *", move || {
                let (r, tx) = (r.clone(), tx.clone());
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(());
                }
            })
            .expect("add");
        assert_eq!(
            crons.list(),
            [("__pbLogsCleanup__".to_string(), "0 */6 * * *".to_string())]
        );
        assert!(crons.run_now("__pbLogsCleanup__"));
        assert!(!crons.run_now("nope"));
        rx.recv().await.expect("ran");
        let at = |h: u32, m: u32| {
            chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 1, 1, h, m, 0)
                .single()
                .expect("date")
        };
        crons.tick(at(6, 1));
        crons.tick(at(12, 0));
        rx.recv().await.expect("ran at 12:00");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "06:01 is not due");
        assert!(crons.add("bad", "* * *", || async {}).is_err());
        assert_eq!(
            next_minute(at(6, 1) + chrono::Duration::milliseconds(59_999)),
            at(6, 2)
        );
        assert_eq!(next_minute(at(6, 2)), at(6, 3));
        assert!(crons.remove("__pbLogsCleanup__"));
        assert!(crons.list().is_empty());
    }
}
