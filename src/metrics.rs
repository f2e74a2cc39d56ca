//! The Prometheus text exposition format (version 0.0.4) of a status `Report`.
//! Names follow Prometheus conventions: the `netpold_` prefix, `_total` on counters,
//! base units (`_seconds`, `_bytes`).

use std::fmt::Write as _;

use crate::status::{Histogram, Report};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Floats as Prometheus reads them (`+Inf`, no exponent surprises).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

struct Writer {
    out: String,
}

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{name}{} {value}", labels(pairs));
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        for (bound, n) in h.bounds.iter().zip(&h.cumulative) {
            self.sample(&format!("{name}_bucket"), &[("le", &number(*bound))], n);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], number(h.sum));
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// The whole scrape.
pub fn render(report: &Report) -> String {
    let mut w = Writer { out: String::new() };
    w.family(
        "netpold_build_info",
        "gauge",
        "Always 1; the version and what this daemon enforces.",
    );
    w.sample(
        "netpold_build_info",
        &[
            ("version", &report.version),
            ("node", report.node.as_deref().unwrap_or("")),
            ("table", &report.table),
        ],
        1,
    );
    if let Some(at) = report.started_unix {
        w.family(
            "netpold_start_time_seconds",
            "gauge",
            "When the daemon started, in seconds since the epoch.",
        );
        w.sample("netpold_start_time_seconds", &[], number(at));
    }
    w.family(
        "netpold_syncs_total",
        "counter",
        "Syncs (loads, compiles and programmings) by result.",
    );
    for result in [
        "programmed",
        "unchanged",
        "failed",
        "not_programmed",
        "repaired",
    ] {
        let n = report.syncs.get(result).copied().unwrap_or(0);
        w.sample("netpold_syncs_total", &[("result", result)], n);
    }
    if let Some(h) = &report.sync_seconds {
        w.histogram(
            "netpold_sync_duration_seconds",
            "How long a sync took, from reading the directory to the kernel's answer.",
            h,
        );
    }
    if let Some(h) = &report.transaction_messages {
        w.histogram(
            "netpold_transaction_messages",
            "Netlink messages in each transaction sent to the kernel.",
            h,
        );
    }
    if let Some(last) = &report.last_sync {
        w.family(
            "netpold_last_sync_timestamp_seconds",
            "gauge",
            "When the last sync ended, in seconds since the epoch.",
        );
        w.sample(
            "netpold_last_sync_timestamp_seconds",
            &[],
            number(last.at_unix),
        );
        w.family(
            "netpold_last_sync_success",
            "gauge",
            "1 when the last sync left the kernel holding the desired ruleset.",
        );
        w.sample(
            "netpold_last_sync_success",
            &[],
            u8::from(matches!(
                last.result.as_str(),
                "programmed" | "unchanged" | "repaired"
            )),
        );
    }
    w.family("netpold_errors_total", "counter", "Errors by kind: manifest problems reported, failed transactions, unreadable directory, failed repairs and read-backs.");
    for kind in ["manifest", "transaction", "directory", "repair", "readback"] {
        let n = report.errors.get(kind).copied().unwrap_or(0);
        w.sample("netpold_errors_total", &[("kind", kind)], n);
    }
    w.family(
        "netpold_drift_repairs_total",
        "counter",
        "Repairs of changes other programs made to the table.",
    );
    w.sample("netpold_drift_repairs_total", &[], report.drift_repairs);
    w.family("netpold_objects", "gauge", "What is enforced, by kind.");
    for (kind, n) in &report.objects {
        w.sample("netpold_objects", &[("kind", kind)], n);
    }
    w.family(
        "netpold_files_in_error",
        "gauge",
        "Manifest files whose current content is not loaded.",
    );
    w.sample("netpold_files_in_error", &[], report.files_in_error.len());
    w.family(
        "netpold_counters_up",
        "gauge",
        "1 when the kernel's counters were read for this scrape.",
    );
    w.sample(
        "netpold_counters_up",
        &[],
        u8::from(report.counters_error.is_none()),
    );
    let policy_labels = |p: &crate::status::PolicyCounter| {
        [
            ("kind", p.kind.clone()),
            ("namespace", p.namespace.clone()),
            ("policy", p.name.clone()),
            ("direction", p.direction.clone()),
        ]
    };
    type Figure = fn(&crate::status::PolicyCounter) -> u64;
    let families: [(&str, &str, Figure); 4] = [
        (
            "netpold_policy_allowed_packets_total",
            "Packets the rules of a policy allowed (reset when the policy's chain is rewritten).",
            |p| p.packets,
        ),
        (
            "netpold_policy_allowed_bytes_total",
            "Bytes the rules of a policy allowed.",
            |p| p.bytes,
        ),
        (
            "netpold_policy_denied_packets_total",
            "Packets the Deny rules of an ordered policy dropped.",
            |p| p.denied_packets,
        ),
        (
            "netpold_policy_denied_bytes_total",
            "Bytes the Deny rules of an ordered policy dropped.",
            |p| p.denied_bytes,
        ),
    ];
    for (name, help, figure) in families {
        w.family(name, "counter", help);
        for p in &report.policies {
            let l = policy_labels(p);
            let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
            w.sample(name, &l, figure(p));
        }
    }
    w.family(
        "netpold_endpoint_denied_packets_total",
        "counter",
        "Packets dropped at an endpoint, by cause (reset when the endpoint's chain is rewritten).",
    );
    for e in &report.endpoints {
        for (cause, n) in &e.by_cause {
            let l = [
                ("namespace", e.namespace.as_str()),
                ("endpoint", &e.name),
                ("direction", &e.direction),
                ("cause", cause),
            ];
            w.sample("netpold_endpoint_denied_packets_total", &l, n);
        }
    }
    w.family(
        "netpold_endpoint_denied_bytes_total",
        "counter",
        "Bytes dropped at an endpoint.",
    );
    for e in &report.endpoints {
        let l = [
            ("namespace", e.namespace.as_str()),
            ("endpoint", &e.name),
            ("direction", &e.direction),
        ];
        w.sample("netpold_endpoint_denied_bytes_total", &l, e.bytes);
    }
    if let Some(flows) = &report.denied_flows {
        w.family(
            "netpold_logged_drops_total",
            "counter",
            "Dropped packets read from the NFLOG group (rate-limited, so a sample).",
        );
        w.sample("netpold_logged_drops_total", &[], flows.logged);
        w.family(
            "netpold_lost_drop_logs_total",
            "counter",
            "Drop-log messages the kernel could not deliver to the daemon.",
        );
        w.sample("netpold_lost_drop_logs_total", &[], flows.lost);
    }
    w.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("a", "x\"y\\z\n")]), "{a=\"x\\\"y\\\\z\\n\"}");
    }

    #[test]
    fn histograms_end_with_inf_sum_and_count() {
        let mut h = Histogram::new(&[0.5]);
        h.observe(0.25);
        h.observe(2.0);
        let report = Report {
            sync_seconds: Some(h),
            ..Report::default()
        };
        let text = render(&report);
        assert!(
            text.contains("netpold_sync_duration_seconds_bucket{le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("netpold_sync_duration_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netpold_sync_duration_seconds_sum 2.25\n"),
            "{text}"
        );
        assert!(
            text.contains("netpold_sync_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("netpold_syncs_total{result=\"failed\"} 0\n"),
            "{text}"
        );
    }
}
