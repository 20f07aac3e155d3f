//! Prometheus metrics served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one plugin call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub plugin: String,
    pub hospital: String,
    pub outcome: String,
}

/// Labels of a plugin's latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

/// Labels of an HTTP response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub status: u16,
}

type HistogramFamily = Family<PluginLabels, Histogram, fn() -> Histogram>;

/// The runtime's metrics.
pub struct Metrics {
    registry: Registry,
    /// Plugin calls by plugin, hospital and outcome (`ok` or an error code).
    pub plugin_calls: Family<CallLabels, Counter>,
    /// Plugin call latency in seconds, instantiation included.
    pub plugin_call_seconds: HistogramFamily,
    /// HTTP responses by status.
    pub http_responses: Family<HttpLabels, Counter>,
    /// Calls and failed calls by (hospital, plugin) since this node started,
    /// for the consoles (a Prometheus family cannot be read back by label).
    call_tally: std::sync::Mutex<std::collections::BTreeMap<(String, String), PluginUsage>>,
}

/// Calls of one plugin at one hospital since this node started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PluginUsage {
    pub hospital: String,
    pub plugin: String,
    pub calls: u64,
    /// Calls that ended in an error (trap, limit, denied capability…).
    pub errors: u64,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vtelehealth");
        let plugin_calls = Family::<CallLabels, Counter>::default();
        let plugin_call_seconds: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let http_responses = Family::<HttpLabels, Counter>::default();
        registry.register(
            "plugin_calls",
            "Plugin calls by outcome",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Plugin call latency, instantiation included",
            plugin_call_seconds.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses by status",
            http_responses.clone(),
        );
        Self {
            registry,
            plugin_calls,
            plugin_call_seconds,
            http_responses,
            call_tally: Default::default(),
        }
    }
}

impl Metrics {
    /// Count one plugin call in the consoles' tally.
    pub fn record_call(&self, hospital: &str, plugin: &str, ok: bool) {
        let mut tally = self
            .call_tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = tally
            .entry((hospital.to_owned(), plugin.to_owned()))
            .or_insert_with(|| PluginUsage {
                hospital: hospital.to_owned(),
                plugin: plugin.to_owned(),
                ..Default::default()
            });
        entry.calls += 1;
        if !ok {
            entry.errors += 1;
        }
    }

    /// The tally, for one hospital or all.
    pub fn usage(&self, hospital: Option<&str>) -> Vec<PluginUsage> {
        let tally = self
            .call_tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tally
            .values()
            .filter(|u| hospital.is_none_or(|h| u.hospital == h))
            .cloned()
            .collect()
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_counts_calls_and_errors_per_hospital_and_plugin() {
        let m = Metrics::default();
        m.record_call("bv-a", "hello", true);
        m.record_call("bv-a", "hello", false);
        m.record_call("bv-b", "hello", true);
        let a = m.usage(Some("bv-a"));
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].calls, a[0].errors), (2, 1));
        assert_eq!(m.usage(None).len(), 2);
        assert!(m.usage(Some("bv-c")).is_empty());
    }
}
