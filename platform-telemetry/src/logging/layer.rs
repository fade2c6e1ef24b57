//! The log line layer: JSON lines or readable text, with the trace and span ids
//! of the enclosing span on every line.
//!
//! A layer of its own rather than a `fmt::Layer` formatter, because the ids live
//! in tracing-opentelemetry's span data, reachable only through the `Dispatch`
//! (`get_otel_context`); a layer is told its dispatch at registration, a
//! formatter is not, and asking for the current dispatch from inside an event
//! returns the no-op one when a scoped subscriber is active (as in tests).

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::{SpanContext, TraceContextExt};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, dispatcher::WeakDispatch};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The two shapes a line can take (`auto` is resolved before this point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineFormat {
    Json,
    Text,
}

pub(crate) struct LogLayer<W> {
    format: LineFormat,
    writer: W,
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> std::fmt::Debug for LogLayer<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLayer")
            .field("format", &self.format)
            .finish()
    }
}

impl<W> LogLayer<W> {
    pub(crate) fn new(format: LineFormat, writer: W) -> Self {
        LogLayer {
            format,
            writer,
            dispatch: OnceLock::new(),
        }
    }
}

impl<S, W> tracing_subscriber::Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = FieldCollector::default();
        event.record(&mut fields);
        // OpenTelemetry's internal events carry their text in `name`, not `message`.
        if fields.message.is_none()
            && super::is_self_target(event.metadata().target())
            && let Some(Value::String(name)) = fields.fields.remove("name")
        {
            fields.message = Some(name);
        }
        let span = ctx.event_span(event);
        let span_name = span.as_ref().map(|s| s.name());
        let ids = span
            .and_then(|leaf| {
                let dispatch = self.dispatch.get()?.upgrade()?;
                // The nearest span the OpenTelemetry layer knows (a filtered-out
                // span, e.g. from hyper, has no context of its own).
                leaf.scope().find_map(|s| {
                    let cx = tracing_opentelemetry::get_otel_context(&s.id(), &dispatch)?;
                    let sc: SpanContext = cx.span().span_context().clone();
                    sc.is_valid().then_some(sc)
                })
            })
            .or_else(|| {
                // A span built straight through the SDK (the server's request
                // span, a client call's) is current as an attached context.
                let cx = opentelemetry::Context::current();
                let sc: SpanContext = cx.span().span_context().clone();
                sc.is_valid().then_some(sc)
            });
        let mut timestamp = String::new();
        let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
        let meta = event.metadata();
        let record = Record {
            timestamp: &timestamp,
            meta,
            span: span_name,
            ids: ids.as_ref(),
            fields,
        };
        let line = match self.format {
            LineFormat::Json => record.json_line(),
            LineFormat::Text => record.text_line(),
        };
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// What one log line says, before it is written as JSON or text.
struct Record<'a> {
    timestamp: &'a str,
    meta: &'a tracing::Metadata<'a>,
    span: Option<&'a str>,
    ids: Option<&'a SpanContext>,
    fields: FieldCollector,
}

impl Record<'_> {
    fn json_line(self) -> String {
        let mut obj = Map::new();
        obj.insert("timestamp".into(), self.timestamp.into());
        obj.insert("level".into(), self.meta.level().as_str().into());
        obj.insert("target".into(), self.meta.target().into());
        obj.insert(
            "message".into(),
            self.fields.message.unwrap_or_default().into(),
        );
        if !self.fields.fields.is_empty() {
            obj.insert("fields".into(), Value::Object(self.fields.fields));
        }
        if let Some(span) = self.span {
            obj.insert("span".into(), span.into());
        }
        if let Some(sc) = self.ids {
            obj.insert("trace_id".into(), sc.trace_id().to_string().into());
            obj.insert("span_id".into(), sc.span_id().to_string().into());
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        line
    }

    fn text_line(self) -> String {
        let mut line = format!("{} {:>5} ", self.timestamp, self.meta.level().as_str());
        if let Some(span) = self.span {
            let _ = write!(line, "{span}: ");
        }
        let _ = write!(
            line,
            "{}: {}",
            self.meta.target(),
            self.fields.message.unwrap_or_default()
        );
        for (k, v) in &self.fields.fields {
            match v {
                Value::String(s) => {
                    let _ = write!(line, " {k}={s:?}");
                }
                other => {
                    let _ = write!(line, " {k}={other}");
                }
            }
        }
        if let Some(sc) = self.ids {
            let _ = write!(line, " trace_id={} span_id={}", sc.trace_id(), sc.span_id());
        }
        line.push('\n');
        line
    }
}

/// Collects an event's fields as JSON values, keeping numbers and booleans typed.
#[derive(Default)]
struct FieldCollector {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl FieldCollector {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            // `log`-style `r#type` fields arrive with the raw prefix.
            let name = field.name().trim_start_matches("r#");
            self.fields.insert(name.to_owned(), value);
        }
    }
}

impl Visit for FieldCollector {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, v);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}
