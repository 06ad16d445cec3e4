//! The process's [`metrics`] recorder: counters, gauges and histograms kept in
//! atomics, rendered in the Prometheus text exposition format (version 0.0.4) for
//! the telemetry listener. Its own, rather than an exporter crate's, to keep the
//! dependency tree to the facade alone: fixed histogram buckets, no summaries, no
//! push gateway, no HTTP server of its own (the broker's actix serves `/metrics`).

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bucket upper bounds of every `*_seconds` histogram: 5 ms to 10 s, the span of a
/// broker request, a store call and an upstream call.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

type Labels = Vec<(String, String)>;

enum Series {
    Counter(Arc<AtomicU64>),
    /// An f64's bits.
    Gauge(Arc<AtomicU64>),
    Histogram(Arc<Buckets>),
}

struct Family {
    kind: Kind,
    help: Option<String>,
    series: BTreeMap<Labels, Series>,
}

/// Cumulative histogram: one count per bucket, the sum (an f64's bits) and the count.
pub struct Buckets {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
    count: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }
}

impl HistogramFn for Buckets {
    fn record(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Helps and kinds described before (or after) the first sample.
#[derive(Default)]
struct Inner {
    families: BTreeMap<String, Family>,
}

/// Cheap to clone: clones share the same metrics.
#[derive(Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn describe(&self, kind: Kind, name: KeyName, help: SharedString) {
        let mut inner = self.lock();
        let family = inner
            .families
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Family {
                kind,
                help: None,
                series: BTreeMap::new(),
            });
        if family.kind == kind {
            family.help = Some(help.into_owned());
        }
    }

    /// The series of `key`, created on first use; `None` when the name is already
    /// a family of another kind (the sample is dropped rather than mislabelled).
    fn series<T>(&self, kind: Kind, key: &Key, pick: impl Fn(&Series) -> Option<T>) -> Option<T> {
        let mut labels: Labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        let mut inner = self.lock();
        let family = inner
            .families
            .entry(key.name().to_owned())
            .or_insert_with(|| Family {
                kind,
                help: None,
                series: BTreeMap::new(),
            });
        if family.kind != kind {
            return None;
        }
        let name = key.name();
        let series = family.series.entry(labels).or_insert_with(|| match kind {
            Kind::Counter => Series::Counter(Arc::new(AtomicU64::new(0))),
            Kind::Gauge => Series::Gauge(Arc::new(AtomicU64::new(0f64.to_bits()))),
            Kind::Histogram => Series::Histogram(Arc::new(Buckets::new(buckets_for(name)))),
        });
        pick(series)
    }

    /// Every family in the Prometheus text format, sorted by name then labels.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        for (name, family) in &inner.families {
            if family.series.is_empty() {
                continue;
            }
            if let Some(help) = &family.help {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
            }
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            label_set(labels, None),
                            c.load(Ordering::Relaxed)
                        );
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            label_set(labels, None),
                            number(f64::from_bits(g.load(Ordering::Relaxed)))
                        );
                    }
                    Series::Histogram(h) => {
                        for (bound, count) in h.bounds.iter().zip(&h.counts) {
                            let le = number(*bound);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                label_set(labels, Some(&le)),
                                count.load(Ordering::Relaxed)
                            );
                        }
                        let count = h.count.load(Ordering::Relaxed);
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            label_set(labels, Some("+Inf"))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            label_set(labels, None),
                            number(f64::from_bits(h.sum.load(Ordering::Relaxed)))
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", label_set(labels, None));
                    }
                }
            }
        }
        out
    }
}

fn buckets_for(_name: &str) -> &'static [f64] {
    // Every histogram the broker records is a `*_seconds` one.
    SECONDS_BUCKETS
}

fn label_set(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Counter, key, description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Gauge, key, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Histogram, key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.series(Kind::Counter, key, |s| match s {
            Series::Counter(c) => Some(Counter::from_arc(c.clone())),
            _ => None,
        })
        .unwrap_or_else(Counter::noop)
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.series(Kind::Gauge, key, |s| match s {
            Series::Gauge(g) => Some(Gauge::from_arc(g.clone())),
            _ => None,
        })
        .unwrap_or_else(Gauge::noop)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.series(Kind::Histogram, key, |s| match s {
            Series::Histogram(h) => Some(Histogram::from_arc(h.clone())),
            _ => None,
        })
        .unwrap_or_else(Histogram::noop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Recorder as _;

    fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, *v))
            .collect();
        Key::from_parts(name, labels)
    }

    const META: Metadata<'static> = Metadata::new("test", metrics::Level::INFO, None);

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let r = Recorder::default();
        r.describe_counter("t_total".into(), None, "Things.\nDone".into());
        r.register_counter(&key("t_total", &[("b", "2"), ("a", "x\"y")]), &META)
            .increment(3);
        r.register_gauge(&key("g", &[]), &META).set(1.5);
        let h = r.register_histogram(&key("d_seconds", &[("r", "/x")]), &META);
        h.record(0.003);
        h.record(0.2);
        h.record(60.0);
        let text = r.render();
        assert!(
            text.contains("# HELP t_total Things.\\nDone\n# TYPE t_total counter\n"),
            "{text}"
        );
        assert!(text.contains("t_total{a=\"x\\\"y\",b=\"2\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE g gauge\ng 1.5\n"), "{text}");
        assert!(
            text.contains("d_seconds_bucket{r=\"/x\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{r=\"/x\",le=\"0.25\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{r=\"/x\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{r=\"/x\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_count{r=\"/x\"} 3\n"), "{text}");
        assert!(text.contains("d_seconds_sum{r=\"/x\"} 60.203"), "{text}");
    }

    #[test]
    fn one_name_keeps_its_first_kind() {
        let r = Recorder::default();
        r.register_counter(&key("x", &[]), &META).increment(1);
        r.register_gauge(&key("x", &[]), &META).set(7.0);
        let text = r.render();
        assert!(text.contains("# TYPE x counter\nx 1\n"), "{text}");
        assert!(!text.contains("x 7"), "{text}");
    }

    #[test]
    fn described_but_never_used_families_are_not_rendered() {
        let r = Recorder::default();
        r.describe_gauge("unused".into(), None, "Never set.".into());
        assert_eq!(r.render(), "");
    }
}
