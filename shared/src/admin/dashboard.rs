//! The status page: one self-contained HTML document (no scripts, no
//! external assets).

use super::{Health, SourceStatus};
use crate::model::{RunLog, Timestamp};
use crate::sync::rfc3339;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn when(at: Option<Timestamp>) -> String {
    at.map_or_else(|| "never".to_owned(), rfc3339)
}

fn badge(health: Health) -> &'static str {
    match health {
        Health::Healthy => r#"<span class="ok">healthy</span>"#,
        Health::Degraded => r#"<span class="warn">degraded</span>"#,
        Health::Unhealthy => r#"<span class="bad">unhealthy</span>"#,
    }
}

pub fn render_dashboard(
    overall: Health,
    statuses: &[SourceStatus],
    failures: &[RunLog],
    dead_letters: usize,
) -> String {
    let mut rows = String::new();
    for s in statuses {
        let last = s.last_run.as_ref().map_or_else(
            || "none".to_owned(),
            |r| {
                format!(
                    "{} {} ({} seen, {} written)",
                    format!("{:?}", r.status).to_lowercase(),
                    rfc3339(r.started_at),
                    r.counts.seen,
                    r.counts.created + r.counts.updated + r.counts.deleted
                )
            },
        );
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(s.source.as_str()),
            if s.enabled { "on" } else { "off" },
            s.interval,
            escape(&last),
            when(s.next_due),
            badge(s.health),
            escape(&s.reasons.join("; ")),
        ));
    }
    let mut failed = String::new();
    for r in failures.iter().take(10) {
        failed.push_str(&format!(
            "<li><b>{}</b> {} &mdash; {}</li>\n",
            escape(r.source.as_str()),
            rfc3339(r.started_at),
            escape(r.error.as_deref().unwrap_or("failed")),
        ));
    }
    if failed.is_empty() {
        failed.push_str("<li>none</li>");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>syncline status</title>
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2rem; color: #1d2330; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #dde; }}
th {{ background: #f3f4f8; }}
.ok {{ color: #176b2c; font-weight: 600; }} .warn {{ color: #9a6400; font-weight: 600; }}
.bad {{ color: #b3261e; font-weight: 600; }}
</style></head>
<body>
<h1>syncline {overall}</h1>
<p>Dead letters waiting: <b>{dead_letters}</b></p>
<h2>Sources</h2>
<table><tr><th>source</th><th>enabled</th><th>interval</th><th>last run</th><th>next due</th><th>health</th><th>why</th></tr>
{rows}</table>
<h2>Recent failures</h2>
<ul>
{failed}</ul>
</body></html>
"#,
        overall = badge(overall),
    )
}
