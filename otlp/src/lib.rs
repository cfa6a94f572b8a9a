//! Arbiter's decision log as OpenTelemetry log records, sent to an OTLP/HTTP receiver (an
//! OpenTelemetry Collector, or any backend that speaks OTLP) in protobuf or JSON.
//!
//! Deciding never waits for it: [`OtlpExporter::offer`] hands the decision log line to a
//! bounded queue (a full queue drops it, and counts it), and the exporter's own thread turns
//! lines into log records, batches them and posts them. A receiver that is down or slow costs
//! decisions nothing; [`OtlpExporter::stats`] says what was exported, dropped and failed.
//!
//! Each record: `event_name` `arbiter.decision`, severity INFO, the decision (`allow`/`deny`)
//! as its body, its time from the event's `time`, and the event's fields as attributes: scalars
//! under their names (`decision`, `latency_us`, `request_id`, `token_id`), flat objects
//! flattened with dots (`principal.type`, `principal.id`, `action.id`, `bundle.version`),
//! arrays as arrays (`reasons`, `errors`), and `context` as a key-value list. Null fields are
//! left out. The resource carries `service.name`.
//!
//! The thread is the exporter's, started by [`OtlpExporter::start`]: a forking host starts one
//! in each worker, after the fork.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arbiter::{CallError, DecisionLogOptions, Engine, ErrorKind};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;

/// How records are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (OTLP's default).
    Protobuf,
    /// `application/json` (OTLP/JSON).
    Json,
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "protobuf" => Ok(Self::Protobuf),
            "json" => Ok(Self::Json),
            _ => Err(format!("`{s}`: the OTLP encoding is protobuf or json")),
        }
    }
}

/// Where and how the exporter sends.
#[derive(Debug, Clone)]
pub struct ExporterOptions {
    /// The logs endpoint, e.g. `http://127.0.0.1:4318/v1/logs`.
    pub endpoint: String,
    pub encoding: Encoding,
    /// Lines waiting to be exported; past this many, new ones are dropped (and counted).
    pub max_queue: usize,
    /// Records per request.
    pub max_batch: usize,
    /// The longest a record waits for its batch to fill.
    pub flush_interval: Duration,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Trust only the CA certificates in this PEM file for HTTPS (else the platform's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl ExporterOptions {
    /// Defaults for `endpoint`: protobuf, 8,192 queued, 512 a batch, 1 s, 5 s, `arbiter`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            encoding: Encoding::Protobuf,
            max_queue: 8_192,
            max_batch: 512,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            service_name: "arbiter".into(),
            ca_file: None,
        }
    }
}

/// What the exporter has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExporterStats {
    /// Records the receiver accepted.
    pub exported: u64,
    /// Records lost: the queue was full, or their export failed.
    pub dropped: u64,
    /// Export requests that failed (status, timeout, connection).
    pub failed_exports: u64,
}

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed_exports: AtomicU64,
}

enum Item {
    Line(String),
    /// Export everything queued before it, then answer.
    Flush(SyncSender<()>),
}

/// Sends decision log lines to an OTLP/HTTP receiver from its own thread.
pub struct OtlpExporter {
    queue: Mutex<Option<SyncSender<Item>>>,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl OtlpExporter {
    /// Starts the exporter's thread. Fails on an endpoint that is not an http(s) URL.
    pub fn start(options: ExporterOptions) -> Result<Self, String> {
        if !(options.endpoint.starts_with("http://") || options.endpoint.starts_with("https://")) {
            return Err(format!(
                "`{}`: the OTLP endpoint is an http:// or https:// URL",
                options.endpoint
            ));
        }
        let (queue, lines) = sync_channel(options.max_queue.max(1));
        let counters = Arc::new(Counters::default());
        let sender = Sender::new(options, Arc::clone(&counters))?;
        let thread = std::thread::Builder::new()
            .name("arbiter-otlp".into())
            .spawn(move || sender.run(lines))
            .map_err(|e| format!("cannot start the OTLP exporter: {e}"))?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues one decision log line (the JSON an engine's decision log hands out). Never
    /// blocks: when the queue is full, or the exporter has shut down, the line is dropped and
    /// counted.
    pub fn offer(&self, line: &str) {
        let sent = match &*lock(&self.queue) {
            Some(queue) => queue.try_send(Item::Line(line.to_owned())),
            None => Err(TrySendError::Disconnected(Item::Line(String::new()))),
        };
        if sent.is_err() {
            self.counters.dropped.fetch_add(1, Relaxed);
        }
    }

    /// What has been exported, dropped and failed so far.
    pub fn stats(&self) -> ExporterStats {
        ExporterStats {
            exported: self.counters.exported.load(Relaxed),
            dropped: self.counters.dropped.load(Relaxed),
            failed_exports: self.counters.failed_exports.load(Relaxed),
        }
    }

    /// Exports everything queued so far, waiting at most `timeout`; whether it finished.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, finished) = sync_channel(1);
        let queued = match &*lock(&self.queue) {
            Some(queue) => queue.send(Item::Flush(done)).is_ok(),
            None => false,
        };
        queued && finished.recv_timeout(timeout).is_ok()
    }

    /// Exports what is queued and stops the thread, waiting at most `timeout` in all (a thread
    /// still stuck on a slow receiver then finishes on its own); later lines are dropped and
    /// counted.
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.flush(timeout);
        drop(lock(&self.queue).take());
        if let Some(thread) = lock(&self.thread).take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        drop(lock(&self.queue).take());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The exporter thread's side: batching, encoding, posting.
struct Sender {
    options: ExporterOptions,
    counters: Arc<Counters>,
    agent: ureq::Agent,
}

impl Sender {
    fn new(options: ExporterOptions, counters: Arc<Counters>) -> Result<Self, String> {
        let agent = arbiter_fleet::http_agent(options.timeout, options.ca_file.as_deref())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            options,
            counters,
            agent,
        })
    }

    fn run(self, items: Receiver<Item>) {
        let mut batch: Vec<LogRecord> = Vec::new();
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(self.options.flush_interval, |t| {
                self.options.flush_interval.saturating_sub(t.elapsed())
            });
            match items.recv_timeout(wait) {
                Ok(Item::Line(line)) => {
                    batch.push(record(&line));
                    oldest.get_or_insert_with(Instant::now);
                    if batch.len() >= self.options.max_batch {
                        self.export(&mut batch);
                        oldest = None;
                    }
                }
                Ok(Item::Flush(done)) => {
                    self.export(&mut batch);
                    oldest = None;
                    let _ = done.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export(&mut batch);
                    oldest = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export(&mut batch);
                    return;
                }
            }
        }
    }

    fn export(&self, batch: &mut Vec<LogRecord>) {
        if batch.is_empty() {
            return;
        }
        let records = std::mem::take(batch);
        let count = records.len() as u64;
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![key_value(
                        "service.name",
                        string(self.options.service_name.clone()),
                    )],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "arbiter".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let (body, content_type) = match self.options.encoding {
            Encoding::Protobuf => (request.encode_to_vec(), "application/x-protobuf"),
            Encoding::Json => (
                serde_json::to_vec(&request).unwrap_or_default(),
                "application/json",
            ),
        };
        let sent = self
            .agent
            .post(&self.options.endpoint)
            .header("Content-Type", content_type)
            .send(&body[..]);
        match sent {
            Ok(response) if response.status().is_success() => {
                self.counters.exported.fetch_add(count, Relaxed);
            }
            _ => {
                self.counters.failed_exports.fetch_add(1, Relaxed);
                self.counters.dropped.fetch_add(count, Relaxed);
            }
        }
    }
}

/// The options a binding passes as JSON: `{"endpoint", "encoding": "protobuf"|"json",
/// "max_queue", "max_batch", "flush_interval_seconds", "timeout_seconds", "service_name",
/// "ca_file", "sample_rate", "max_events_per_second"}`, all but `endpoint` optional.
pub fn options_from_json(json: &str) -> Result<(ExporterOptions, DecisionLogOptions), String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        endpoint: String,
        encoding: Option<String>,
        max_queue: Option<usize>,
        max_batch: Option<usize>,
        flush_interval_seconds: Option<f64>,
        timeout_seconds: Option<f64>,
        service_name: Option<String>,
        ca_file: Option<std::path::PathBuf>,
        sample_rate: Option<f64>,
        max_events_per_second: Option<u32>,
    }
    let given: Given =
        serde_json::from_str(json).map_err(|e| format!("OTLP decision log options: {e}"))?;
    let seconds = |name: &str, value: Option<f64>, default: Duration| match value {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!(
            "OTLP decision log options: `{name}` must be a positive number of seconds, not {s}"
        )),
    };
    let default = ExporterOptions::new(given.endpoint);
    let exporter = ExporterOptions {
        encoding: match given.encoding {
            Some(e) => e.parse()?,
            None => default.encoding,
        },
        max_queue: given.max_queue.unwrap_or(default.max_queue).max(1),
        max_batch: given.max_batch.unwrap_or(default.max_batch).max(1),
        flush_interval: seconds(
            "flush_interval_seconds",
            given.flush_interval_seconds,
            default.flush_interval,
        )?,
        timeout: seconds("timeout_seconds", given.timeout_seconds, default.timeout)?,
        service_name: given.service_name.unwrap_or(default.service_name.clone()),
        ca_file: given.ca_file,
        endpoint: default.endpoint,
    };
    let log = DecisionLogOptions {
        sample_rate: given.sample_rate.unwrap_or(1.0),
        max_events_per_second: given.max_events_per_second,
    };
    Ok((exporter, log))
}

/// Starts an exporter and makes it `engine`'s decision log, replacing any other; answers it,
/// for its [`OtlpExporter::stats`]. Once the engine's decision log is replaced or cleared, or
/// the engine dropped, the exporter's thread exports what is queued and ends.
pub fn export_decision_log(
    engine: &Engine,
    options: ExporterOptions,
    log: DecisionLogOptions,
) -> Result<Arc<OtlpExporter>, CallError> {
    let exporter = Arc::new(
        OtlpExporter::start(options).map_err(|e| CallError::new(ErrorKind::InvalidArgument, e))?,
    );
    let sink = Arc::clone(&exporter);
    engine
        .set_decision_log(log, move |line| sink.offer(line))
        .map_err(|e| CallError::new(ErrorKind::InvalidArgument, e.to_string()))?;
    Ok(exporter)
}

/// Stats as the bindings hand them out: `{"exported", "dropped", "failed_exports"}`, or `null`
/// for none.
pub fn stats_json(stats: Option<&ExporterStats>) -> String {
    match stats {
        None => "null".into(),
        Some(s) => serde_json::json!({"exported": s.exported, "dropped": s.dropped,
                                      "failed_exports": s.failed_exports})
        .to_string(),
    }
}

/// The log record of one decision log line (a line that is not a JSON object becomes a record
/// with the line as its body and no attributes).
pub fn record(line: &str) -> LogRecord {
    let now = now_nanos();
    let mut record = LogRecord {
        observed_time_unix_nano: now,
        time_unix_nano: now,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        event_name: "arbiter.decision".into(),
        ..LogRecord::default()
    };
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(line) else {
        record.body = Some(string(line.to_owned()));
        return record;
    };
    for (name, value) in &event {
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("time", Value::String(time)) => {
                if let Ok(at) = time::OffsetDateTime::parse(
                    time,
                    &time::format_description::well_known::Rfc3339,
                ) {
                    record.time_unix_nano = u64::try_from(at.unix_timestamp_nanos()).unwrap_or(0);
                }
            }
            ("context", value) => record.attributes.push(key_value(name, any(value))),
            (_, Value::Object(members))
                if members.values().all(|v| !v.is_object() && !v.is_array()) =>
            {
                for (member, value) in members.iter().filter(|(_, v)| !v.is_null()) {
                    record
                        .attributes
                        .push(key_value(&format!("{name}.{member}"), any(value)));
                }
            }
            (_, value) => record.attributes.push(key_value(name, any(value))),
        }
    }
    if let Some(Value::String(decision)) = event.get("decision") {
        record.body = Some(string(decision.clone()));
    }
    record
}

fn any(value: &Value) -> AnyValue {
    let value = match value {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(items) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: items.iter().map(any).collect(),
        })),
        Value::Object(members) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: members.iter().map(|(k, v)| key_value(k, any(v))).collect(),
        })),
    };
    AnyValue { value }
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s)),
    }
}

fn key_value(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"time":"2026-12-07T18:46:07.691923355Z","request_id":null,"bundle":{"name":"gitlab","version":"1.0.0"},"principal":{"type":"Gitlab::User","id":"alice"},"action":{"type":"Gitlab::Action","id":"push_code"},"decision":"allow","reasons":["role-developer"],"errors":[],"latency_us":442.5,"context":{"admin_mode":false}}"#;

    fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_decision_becomes_a_record_with_its_fields_as_attributes() {
        let record = record(LINE);
        assert_eq!(record.event_name, "arbiter.decision");
        assert_eq!(record.time_unix_nano, 1_796_669_167_691_923_355);
        let text = |s: &str| Some(any_value::Value::StringValue(s.into()));
        assert_eq!(attribute(&record, "decision"), text("allow").as_ref());
        assert_eq!(attribute(&record, "principal.id"), text("alice").as_ref());
        assert_eq!(attribute(&record, "bundle.version"), text("1.0.0").as_ref());
        assert_eq!(
            attribute(&record, "latency_us"),
            Some(&any_value::Value::DoubleValue(442.5))
        );
        assert!(attribute(&record, "request_id").is_none());
        assert!(matches!(
            attribute(&record, "context"),
            Some(any_value::Value::KvlistValue(_))
        ));
        assert!(matches!(
            attribute(&record, "reasons"),
            Some(any_value::Value::ArrayValue(a)) if a.values.len() == 1
        ));
        assert_eq!(record.body, Some(string("allow".into())));
        // Not JSON: the line is the body.
        assert_eq!(super::record("oops").body, Some(string("oops".into())));
    }

    #[test]
    fn a_receiver_that_is_down_costs_nothing_but_the_records_counted() {
        let exporter = OtlpExporter::start(ExporterOptions {
            max_queue: 4,
            ..ExporterOptions::new("http://127.0.0.1:1/v1/logs")
        })
        .unwrap();
        for _ in 0..1_000 {
            exporter.offer(LINE);
        }
        // Every line is accounted for: none exported, so all dropped (a full queue, or a
        // failed export).
        exporter.shutdown(Duration::from_secs(5));
        let stats = exporter.stats();
        assert_eq!(stats.exported, 0);
        assert_eq!(stats.dropped, 1_000);
        assert!(stats.failed_exports >= 1);
        exporter.offer(LINE);
        assert_eq!(exporter.stats().dropped, 1_001);
        assert!(OtlpExporter::start(ExporterOptions::new("udp://x")).is_err());
    }
}
