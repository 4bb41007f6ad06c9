//! `/healthz`, `/readyz` and `/metrics` of a running pipeline (`[service] listen`).
//!
//! - `/healthz` (liveness: Kubernetes restarts the pod when it fails): every pipeline stage
//!   (source loop, decode, route, sentinel, archive, acks) is making progress, i.e. none has been working without a word
//!   for longer than `[service] liveness_threshold_seconds`, and none died (see
//!   `defender_core::health`). Waiting is not stalling: an idle hub, or stages held back by a
//!   sink, stay healthy; so does a sink waiting out a Sentinel outage or a permanent refusal,
//!   as long as it keeps getting answers: a restart would not bring the service back.
//! - `/readyz`: live, not shutting down, the broker reachable (Kafka source), and no
//!   destination refusing us permanently (a 403 while a role assignment propagates, a DCR that
//!   does not exist): the daemon holds the data and retries, and says why it is not ready.
//! - `/metrics`: Prometheus text, through the `metrics` facade (every name in
//!   [`crate::metrics::METRICS`], documented in docs/METRICS.md).
//!
//! A failing probe answers 503 with the reason in the body.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use defender_core::health::Health;
use defender_pipeline::Progress;
use defender_sources::{eventhubs::EventHubsMetrics, kafka::KafkaMetrics};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Exporter;

/// What the endpoints report on, updated by the run.
#[derive(Debug)]
pub struct Status {
    last: Mutex<Progress>,
    kafka: Option<KafkaMetrics>,
    eventhubs: Option<EventHubsMetrics>,
    health: Health,
    /// A stage working this long without progress fails liveness.
    threshold: Duration,
    stopping: AtomicBool,
    exporter: Exporter,
}

impl Status {
    pub fn new(
        kafka: Option<KafkaMetrics>,
        eventhubs: Option<EventHubsMetrics>,
        health: Health,
        threshold: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            last: Mutex::new(Progress::default()),
            kafka,
            eventhubs,
            health,
            threshold,
            stopping: AtomicBool::new(false),
            exporter: Exporter::install(),
        })
    }

    pub fn progress(&self, p: &Progress) {
        *self.last.lock().expect("status poisoned") = p.clone();
    }

    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn healthy(&self) -> Result<(), String> {
        self.health.live(self.threshold)
    }

    fn ready(&self) -> Result<(), String> {
        self.healthy()?;
        if self.stopping.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if let Some(k) = &self.kafka
            && !k.snapshot().broker_up
        {
            return Err("no kafka broker connection up".into());
        }
        if let Some(e) = &self.eventhubs
            && !e.snapshot().connected
        {
            return Err("the event hubs processor is not running".into());
        }
        let refused: Vec<String> = self
            .health
            .refused()
            .into_iter()
            .map(|(sink, since, why)| format!("{sink} refuses us for {}s, data held: {why}", since.as_secs()))
            .collect();
        if refused.is_empty() { Ok(()) } else { Err(refused.join("; ")) }
    }

    /// The Prometheus exposition.
    pub fn metrics(&self) -> String {
        let p = self.last.lock().expect("status poisoned").clone();
        let kafka = self.kafka.as_ref().map(KafkaMetrics::snapshot);
        let eventhubs = self.eventhubs.as_ref().map(EventHubsMetrics::snapshot);
        self.exporter.render(&p, kafka.as_ref(), eventhubs.as_ref(), &self.health, self.threshold)
    }
}

/// Binds `addr` (so a busy port fails the start) and serves the endpoints until the runtime ends.
pub async fn spawn(addr: &str, status: Arc<Status>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("service.listen: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let exporter = status.exporter.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            exporter.upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let status = status.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let status = status.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&status, &req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    Ok(local)
}

fn respond(status: &Status, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, body: String, kind: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(kind));
        r
    };
    let plain = "text/plain; charset=utf-8";
    let probe = |r: Result<(), String>| match r {
        Ok(()) => text(StatusCode::OK, "ok\n".into(), plain),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why + "\n", plain),
    };
    match req.uri().path() {
        "/healthz" => probe(status.healthy()),
        "/readyz" => probe(status.ready()),
        "/metrics" => text(StatusCode::OK, status.metrics(), "text/plain; version=0.0.4; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n".into(), plain),
    }
}
