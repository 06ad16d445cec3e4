//! OpenTelemetry traces over OTLP/HTTP (protobuf), off unless an endpoint is
//! configured (docs/operations.md, "Tracing"). [`resolve`] decides from
//! `[telemetry.tracing]` and the standard `OTEL_*` variables — a key set in the
//! file wins over its variable, `OTEL_SDK_DISABLED=true` turns tracing off
//! whatever the file says — and [`Pipeline::start`] builds the batch exporter
//! (its own thread; none when off) and installs the W3C trace-context
//! propagator. The binary puts [`Pipeline::tracer`] behind a
//! `tracing-opentelemetry` layer; [`Pipeline::shutdown`] flushes on exit.

use crate::config::TracingSettings;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// What tracing runs with, once decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The full traces URL (`…/v1/traces`).
    pub endpoint: String,
    pub service_name: String,
    /// `Some`: the file's ratio; `None`: the SDK reads `OTEL_TRACES_SAMPLER`(`_ARG`).
    pub sampling_ratio: Option<f64>,
}

/// `None`: tracing is off. `env` reads a variable (`std::env::var` in the binary).
pub fn resolve(s: &TracingSettings, env: impl Fn(&str) -> Option<String>) -> Option<Resolved> {
    let set = |k: &str| {
        env(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    if set(OTEL_SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let endpoint = match s.otlp_endpoint.as_deref().map(str::trim) {
        Some(e) if !e.is_empty() => traces_url(e),
        _ => match set(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) {
            // The signal's own variable is used as it is (the OTLP spec).
            Some(e) => e,
            None => traces_url(&set(OTEL_EXPORTER_OTLP_ENDPOINT)?),
        },
    };
    let service_name = s
        .service_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(|| set(OTEL_SERVICE_NAME))
        .unwrap_or_else(|| "idbridge".to_owned());
    Some(Resolved {
        endpoint,
        service_name,
        sampling_ratio: s.sampling_ratio,
    })
}

/// `base` with `/v1/traces` unless it already ends so.
fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The file's keys, checked (`telemetry.tracing.*`): `Err` names the key.
pub fn check(s: &TracingSettings) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Some(e) = s.otlp_endpoint.as_deref().map(str::trim) {
        match url::Url::parse(e) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                if u.query().is_some() || !u.username().is_empty() || u.password().is_some() {
                    problems.push(("telemetry.tracing.otlp_endpoint", format!("{e:?} must not carry a query or credentials (put collector headers in OTEL_EXPORTER_OTLP_HEADERS)")));
                }
            }
            _ => problems.push((
                "telemetry.tracing.otlp_endpoint",
                format!("{e:?} is not an http(s) URL of an OTLP/HTTP collector (e.g. http://127.0.0.1:4318)"),
            )),
        }
    }
    if let Some(r) = s.sampling_ratio {
        if !(0.0..=1.0).contains(&r) {
            problems.push((
                "telemetry.tracing.sampling_ratio",
                format!("{r} is not between 0.0 and 1.0 (the share of new traces kept)"),
            ));
        }
    }
    problems
}

/// The running exporter.
pub struct Pipeline {
    provider: SdkTracerProvider,
    pub resolved: Resolved,
}

impl Pipeline {
    /// Builds the exporter and the provider and installs the W3C propagator (so
    /// the connector kit's calls carry `traceparent`). `Ok(None)` when off.
    pub fn start(
        s: &TracingSettings,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Pipeline>, String> {
        let Some(resolved) = resolve(s, env) else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(resolved.endpoint.clone())
            .build()
            .map_err(|e| format!("telemetry.tracing: cannot build the OTLP exporter: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(resolved.service_name.clone())
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource);
        if let Some(ratio) = resolved.sampling_ratio {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(ratio),
            )));
        }
        let provider = builder.build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        Ok(Some(Pipeline { provider, resolved }))
    }

    /// The tracer for the `tracing-opentelemetry` layer.
    pub fn tracer(&self) -> opentelemetry_sdk::trace::SdkTracer {
        self.provider.tracer("idbridge")
    }

    /// Export what is still buffered and stop the exporter (on SIGTERM, at exit).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(stage = "telemetry", error = %e, "the last spans could not be exported: check that the OTLP collector at telemetry.tracing.otlp_endpoint answers");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn file(endpoint: Option<&str>) -> TracingSettings {
        TracingSettings {
            otlp_endpoint: endpoint.map(str::to_owned),
            ..TracingSettings::default()
        }
    }

    #[test]
    fn off_without_an_endpoint_or_when_the_sdk_is_disabled() {
        assert_eq!(resolve(&file(None), env(&[])), None);
        assert_eq!(
            resolve(
                &file(Some("http://c:4318")),
                env(&[(OTEL_SDK_DISABLED, "true")])
            ),
            None
        );
        assert!(resolve(
            &file(Some("http://c:4318")),
            env(&[(OTEL_SDK_DISABLED, "false")])
        )
        .is_some());
    }

    #[test]
    fn the_file_wins_over_the_variables_and_the_variables_fill_the_rest() {
        let vars = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://env:4318"),
            (OTEL_SERVICE_NAME, "from-env"),
        ];
        let r = resolve(&file(Some("http://file:4318/")), env(&vars)).unwrap();
        assert_eq!(r.endpoint, "http://file:4318/v1/traces");
        assert_eq!(r.service_name, "from-env");
        let r = resolve(&file(None), env(&vars)).unwrap();
        assert_eq!(r.endpoint, "http://env:4318/v1/traces");
        let r = resolve(
            &file(None),
            env(&[
                (OTEL_EXPORTER_OTLP_ENDPOINT, "http://env:4318"),
                (
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                    "http://traces:4318/custom",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(r.endpoint, "http://traces:4318/custom");
        assert_eq!(r.service_name, "idbridge");
    }

    #[test]
    fn bad_keys_are_named() {
        let bad = TracingSettings {
            otlp_endpoint: Some("collector:4318".into()),
            service_name: None,
            sampling_ratio: Some(1.5),
        };
        let keys: Vec<_> = check(&bad).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "telemetry.tracing.otlp_endpoint",
                "telemetry.tracing.sampling_ratio"
            ]
        );
        assert!(check(&file(Some("http://127.0.0.1:4318"))).is_empty());
    }
}
