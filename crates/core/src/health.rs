//! What the probes of a running pipeline report on: is every stage making progress
//! (liveness), and is any destination refusing us permanently (readiness).
//!
//! - Each long-running stage (the source loop, the decode, route, destination and ack tasks)
//!   holds a [`Beat`] and says, as it goes, whether it is **working** (doing its own work: decoding, encoding,
//!   writing) or **waiting** (for input, or for room downstream). A stage that has been working
//!   for longer than the threshold without saying anything is *stalled*: a stuck call, a
//!   deadlock, a loop that stopped turning. Waiting is never stalled: an idle source, or a
//!   decoder held back by a sink, is not the decoder's fault.
//! - A stage waiting out an outage of a service (a Sentinel call answered 503, a refusal it
//!   retries later) says so with [`Beat::excuse`]: restarting the process would not bring the
//!   service back, so liveness holds for as long as the stage keeps getting answers.
//! - A [`Beat`] dropped by a panic (its task or thread died) makes the stage *gone*: liveness
//!   fails until the process ends. A stage that ends normally is done, never stalled.
//! - A destination that is refused permanently (403, 404, a credential Entra refuses) while the
//!   process holds its data and retries reports a [`Condition`]: readiness fails while it is
//!   set, with the reason (never a secret: the reasons are the sinks' error texts).
//!
//! Everything is a few atomics and one mutex taken per probe: cheap enough to call per item.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// The shared state: one per process (clones share it).
#[derive(Debug, Clone)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    origin: Instant,
    stages: Mutex<Vec<Arc<Stage>>>,
    conditions: Mutex<Vec<Arc<ConditionCell>>>,
}

#[derive(Debug)]
struct Stage {
    name: &'static str,
    /// Milliseconds since `origin` of the last word from the stage.
    last: AtomicU64,
    working: AtomicBool,
    /// Milliseconds since `origin` until which a stall is excused (an outage being waited out).
    excused_until: AtomicU64,
    gone: AtomicBool,
}

#[derive(Debug)]
struct ConditionCell {
    name: &'static str,
    /// (since, reason) while the destination is refused permanently.
    refused: Mutex<Option<(Instant, String)>>,
}

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(Inner {
            origin: Instant::now(),
            stages: Mutex::new(Vec::new()),
            conditions: Mutex::new(Vec::new()),
        }))
    }
}

/// One stage's view of a probe, for `/healthz` and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    pub name: &'static str,
    pub working: bool,
    /// Since the stage last said anything.
    pub silent: Duration,
    pub excused: bool,
    pub gone: bool,
}

impl StageReport {
    /// Working without a word past `threshold` (and not excused), or died.
    pub fn stalled(&self, threshold: Duration) -> bool {
        self.gone || (self.working && !self.excused && self.silent > threshold)
    }
}

impl Health {
    fn now_ms(&self) -> u64 {
        self.0.origin.elapsed().as_millis() as u64
    }

    /// A stage's handle, starting out waiting. Names are static: the set of stages is fixed by
    /// the code, so metric labels made from them stay bounded.
    pub fn stage(&self, name: &'static str) -> Beat {
        let stage = Arc::new(Stage {
            name,
            last: AtomicU64::new(self.now_ms()),
            working: AtomicBool::new(false),
            excused_until: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        });
        self.0.stages.lock().expect("health poisoned").push(stage.clone());
        Beat(StageObserver { health: self.clone(), stage })
    }

    /// A destination's readiness condition (set while it is refused permanently).
    pub fn condition(&self, name: &'static str) -> Condition {
        let cell = Arc::new(ConditionCell { name, refused: Mutex::new(None) });
        self.0.conditions.lock().expect("health poisoned").push(cell.clone());
        Condition(cell)
    }

    /// Every stage, in the order they were made.
    pub fn stages(&self) -> Vec<StageReport> {
        let now = self.now_ms();
        self.0
            .stages
            .lock()
            .expect("health poisoned")
            .iter()
            .map(|s| StageReport {
                name: s.name,
                working: s.working.load(Ordering::SeqCst),
                silent: Duration::from_millis(now.saturating_sub(s.last.load(Ordering::SeqCst))),
                excused: s.excused_until.load(Ordering::SeqCst) > now,
                gone: s.gone.load(Ordering::SeqCst),
            })
            .collect()
    }

    /// Ok while every stage makes progress: none has been working silently for longer than
    /// `threshold` (unless excused), none is gone. The error names each stalled stage.
    pub fn live(&self, threshold: Duration) -> Result<(), String> {
        let stalled: Vec<String> = self
            .stages()
            .into_iter()
            .filter(|s| s.stalled(threshold))
            .map(|s| {
                if s.gone {
                    format!("stage {} died (panicked)", s.name)
                } else {
                    format!(
                        "stage {} has made no progress for {}s (threshold {}s)",
                        s.name,
                        s.silent.as_secs(),
                        threshold.as_secs()
                    )
                }
            })
            .collect();
        if stalled.is_empty() { Ok(()) } else { Err(stalled.join("; ")) }
    }

    /// The names of every destination's condition.
    pub fn conditions(&self) -> Vec<&'static str> {
        self.0.conditions.lock().expect("health poisoned").iter().map(|c| c.name).collect()
    }

    /// Destinations refused permanently right now: (name, for how long, reason).
    pub fn refused(&self) -> Vec<(&'static str, Duration, String)> {
        self.0
            .conditions
            .lock()
            .expect("health poisoned")
            .iter()
            .filter_map(|c| {
                let refused = c.refused.lock().expect("health poisoned");
                refused.as_ref().map(|(since, why)| (c.name, since.elapsed(), why.clone()))
            })
            .collect()
    }
}

/// A stage's handle: tell it what the stage is doing. Dropped by a panic, it marks the stage
/// gone; dropped otherwise, done (waiting).
#[derive(Debug)]
pub struct Beat(StageObserver);

impl std::ops::Deref for Beat {
    type Target = StageObserver;

    fn deref(&self) -> &StageObserver {
        &self.0
    }
}

impl Beat {
    /// Another handle on the same stage, for a component the stage drives (the Sentinel client
    /// inside the Sentinel task, librdkafka's callbacks); dropping it does not mark the stage gone.
    pub fn observer(&self) -> StageObserver {
        self.0.clone()
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stage.gone.store(true, Ordering::SeqCst);
        } else {
            self.0.touch(false);
        }
    }
}

/// A [`Beat`] without ownership of the stage.
#[derive(Debug, Clone)]
pub struct StageObserver {
    health: Health,
    stage: Arc<Stage>,
}

impl StageObserver {
    fn touch(&self, working: bool) {
        self.stage.last.store(self.health.now_ms(), Ordering::SeqCst);
        self.stage.working.store(working, Ordering::SeqCst);
    }

    /// The stage is doing its own work (and has just made progress).
    pub fn working(&self) {
        self.touch(true);
    }

    /// The stage waits for input or for room downstream: not stalled however long it takes.
    pub fn waiting(&self) {
        self.touch(false);
    }

    /// The stage is alive but held by a service it keeps trying (an outage, a refusal it will
    /// retry after `wait`): not stalled until `wait` (plus the threshold) has passed.
    pub fn excuse(&self, wait: Duration) {
        let now = self.health.now_ms();
        self.stage.excused_until.fetch_max(now.saturating_add(wait.as_millis() as u64), Ordering::SeqCst);
        self.stage.last.store(now, Ordering::SeqCst);
    }
}

/// A destination's readiness: set while it refuses us permanently.
#[derive(Debug, Clone)]
pub struct Condition(Arc<ConditionCell>);

impl Condition {
    /// The destination refuses us (kept from the first refusal of a streak).
    pub fn refused(&self, reason: &str) {
        let mut refused = self.0.refused.lock().expect("health poisoned");
        match &mut *refused {
            Some((_, why)) => reason.clone_into(why),
            None => *refused = Some((Instant::now(), reason.to_string())),
        }
    }

    /// The destination took a call again.
    pub fn accepted(&self) {
        *self.0.refused.lock().expect("health poisoned") = None;
    }
}

#[cfg(test)]
// Synchronous tests, no runtime: they wait with thread::sleep.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(50);

    fn wait() {
        std::thread::sleep(T * 2);
    }

    #[test]
    fn a_waiting_stage_is_live_however_long_it_waits() {
        let h = Health::default();
        let b = h.stage("decode");
        b.waiting();
        wait();
        assert_eq!(h.live(T), Ok(()));
    }

    #[test]
    fn a_stage_working_silently_past_the_threshold_is_stalled_until_it_speaks() {
        let h = Health::default();
        let b = h.stage("sink");
        b.working();
        assert_eq!(h.live(T), Ok(()));
        wait();
        let e = h.live(T).unwrap_err();
        assert!(e.contains("stage sink has made no progress"), "{e}");
        b.working();
        assert_eq!(h.live(T), Ok(()));
    }

    #[test]
    fn an_excused_stage_is_live_until_the_excuse_runs_out() {
        let h = Health::default();
        let b = h.stage("sink");
        b.working();
        b.observer().excuse(T * 4);
        wait();
        assert_eq!(h.live(T), Ok(()), "the outage is being waited out");
        std::thread::sleep(T * 4);
        assert!(h.live(T).is_err(), "the excuse ran out and nothing was heard since");
    }

    #[test]
    fn a_stage_that_panicked_is_gone_one_that_ended_is_done() {
        let h = Health::default();
        let b = h.stage("source");
        let died = std::thread::spawn(move || {
            let _b = b;
            panic!("the consumer thread dies");
        })
        .join();
        assert!(died.is_err());
        assert!(h.live(T).unwrap_err().contains("stage source died"), "{:?}", h.live(T));
        let h = Health::default();
        let b = h.stage("source");
        b.working();
        drop(b);
        wait();
        assert_eq!(h.live(T), Ok(()), "a stage that returned is not stalled");
    }

    #[test]
    fn a_condition_is_reported_while_refused_and_cleared_on_acceptance() {
        let h = Health::default();
        let c = h.condition("sentinel");
        assert!(h.refused().is_empty());
        c.refused("403 forbidden");
        c.refused("404 not found");
        let refused = h.refused();
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].0, refused[0].2.as_str()), ("sentinel", "404 not found"));
        c.accepted();
        assert!(h.refused().is_empty());
    }
}
