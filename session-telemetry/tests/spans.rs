//! The span of every call: the documented OpenTelemetry fields, and never an id or data.
//! In a process of its own: tracing caches per call site whether anyone listens, process
//! wide, so a test subscriber set on one thread is reliable only with no other test running.

#![allow(clippy::unwrap_used)] // a failed call is a failed test, and unwrap says where

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{instrumented, runtime, script};
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Every closed span's fields, as text.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields(HashMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> tracing_subscriber::Layer<S> for Spans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields(HashMap::new());
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut extensions = span.extensions_mut();
        values.record(extensions.get_mut::<Fields>().unwrap());
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span.extensions_mut().remove::<Fields>().unwrap();
        self.0.lock().unwrap().push(fields.0);
    }
}

#[test]
fn spans_carry_the_documented_fields_and_never_an_id_or_data() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let (destroyed, rotated) = tracing::subscriber::with_default(subscriber, || {
        runtime().block_on(script(&instrumented()))
    });
    let spans = spans.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 17, "one span per call: {spans:#?}");
    for span in &spans {
        for field in [
            "otel.name",
            "db.system.name",
            "db.operation.name",
            "outcome",
        ] {
            assert!(span.contains_key(field), "{field} missing in {span:?}");
        }
        assert_eq!(span["db.system.name"], "memory");
        assert_eq!(span["server.address"], "cache.internal");
        assert_eq!(span["server.port"], "7000");
        assert_eq!(span["otel.name"], span["db.operation.name"]);
        let text = format!("{span:?}");
        for secret in [destroyed.expose(), rotated.expose(), "a secret cart"] {
            assert!(!text.contains(secret), "{secret} leaked into {span:?}");
        }
    }
    let destroy = spans
        .iter()
        .find(|s| s["db.operation.name"] == "destroy")
        .unwrap();
    assert_eq!(
        destroy["session.fingerprint"],
        destroyed.fingerprint().to_string()
    );
    assert_eq!(destroy["outcome"], "ok");
    let failed = spans.iter().find(|s| s.contains_key("error.type")).unwrap();
    assert_eq!(failed["error.type"], "payload_too_large");
    assert_eq!(failed["otel.status_code"], "ERROR");
    let outcomes: Vec<&str> = spans.iter().map(|s| s["outcome"].as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "miss").count(), 2);
    assert_eq!(outcomes.iter().filter(|o| **o == "conflict").count(), 3);
}
