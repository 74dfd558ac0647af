//! The provider's log, as Terraform and OpenTofu read it: one JSON object per line on stderr in
//! hclog's shape (`@level`, `@message`, `@timestamp`, then the fields), which the plugin host
//! logs at that level. `TF_LOG=DEBUG` (or `TF_LOG_PROVIDER`) then shows what the provider does
//! while an apply waits: its calls to kamajid and each phase a tenant goes through. Nothing
//! secret is ever a field: the call sites log names, phases and conditions only.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Installs the log unless tf-provider's own (`PLUGIN_LOG_FILE`) is asked for.
pub fn init() {
    if std::env::var_os("PLUGIN_LOG_FILE").is_some() {
        return;
    }
    let _ = tracing_subscriber::registry()
        .with(
            Hclog.with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.target().starts_with("terraform_provider_kamaji")
            })),
        )
        .try_init();
}

struct Hclog;

#[derive(Default)]
struct Fields {
    message: String,
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.insert(field.name().to_owned(), value.into());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest.insert(field.name().to_owned(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        if field.name() == "message" {
            self.message = s;
        } else {
            self.rest.insert(field.name().to_owned(), s.into());
        }
    }
}

/// The time as hclog writes it, which is the only layout the plugin host parses
/// (`2006-01-02T15:04:05.000000Z07:00`: exactly six fractional digits). A line whose time does
/// not parse is logged raw at DEBUG whatever its level, so `TF_LOG=INFO` would not show it.
fn timestamp(now: time::OffsetDateTime) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// One event as hclog writes it.
fn line(level: &Level, fields: Fields, now: time::OffsetDateTime) -> String {
    let level = match *level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    };
    let mut obj = serde_json::Map::new();
    obj.insert("@level".into(), level.into());
    obj.insert("@message".into(), fields.message.into());
    obj.insert("@module".into(), "kamaji".into());
    obj.insert("@timestamp".into(), timestamp(now).into());
    obj.extend(fields.rest);
    serde_json::Value::Object(obj).to_string()
}

impl<S: Subscriber> Layer<S> for Hclog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let text = line(
            event.metadata().level(),
            fields,
            time::OffsetDateTime::now_utc(),
        );
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_what_hclog_writes() {
        let mut f = Fields {
            message: "tenant cluster phase".into(),
            ..Default::default()
        };
        f.rest.insert("tenant".into(), "acme".into());
        let l = line(&Level::INFO, f, time::OffsetDateTime::UNIX_EPOCH);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["@level"], "info");
        assert_eq!(v["@message"], "tenant cluster phase");
        assert_eq!(v["@timestamp"], "1970-01-01T00:00:00.000000Z");
        let t =
            time::OffsetDateTime::UNIX_EPOCH + time::Duration::new(86_400 * 365 + 5, 123_456_789);
        assert_eq!(timestamp(t), "1971-01-01T00:00:05.123456Z");
        assert_eq!(v["tenant"], "acme");
    }
}
