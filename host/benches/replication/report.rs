//! The closing table: every figure next to the floor's, with its ratio and the goal.

use crate::floor::pct;
use crate::load::best;
use crate::resolver::median;
use crate::{Config, Results, ms};

/// The goals.
const LATENCY_P50_MAX_RATIO: f64 = 2.0;
const THROUGHPUT_MIN_RATIO: f64 = 0.40;
const CATCHUP_MIN_RATE: f64 = 50_000.0;
const RESOLVER_MAX_COST: f64 = 0.10;

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

pub fn print(config: &Config, r: &Results) {
    let Some(floor) = &r.floor else { return };
    println!(
        "\nReplication: 3 NATS servers (R3) + 3 Syncbase nodes, one machine, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match &r.create_facts {
        Some(f) => println!(
            "message size: floor {} B (representative create event); creates in the stream: \
             median {} B",
            r.floor_size,
            f.median_size()
        ),
        None => println!("message size: floor {} B", r.floor_size),
    }
    println!(
        "\n{:<46}{:>12}{:>12}{:>10}  goal",
        "metric", "floor", "Syncbase", "ratio"
    );
    let row = |name: &str, f: String, s: String, ratio: String, goal: String| {
        println!("{name:<46}{f:>12}{s:>12}{ratio:>10}  {goal}");
    };
    if let Some(l) = &r.latency {
        for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
            let (f, s) = (ms(floor.latency(p)), ms(pct(&l.samples, p)));
            let goal = if p == 0.5 {
                format!(
                    "<= {LATENCY_P50_MAX_RATIO}x: {}",
                    verdict(s <= LATENCY_P50_MAX_RATIO * f)
                )
            } else {
                String::new()
            };
            row(
                &format!("latency {label}, ms (A answered -> C shows it)"),
                format!("{f:.3}"),
                format!("{s:.3}"),
                format!("{:.2}x", s / f),
                goal,
            );
        }
    }
    if !r.steps.is_empty() {
        let f = floor.publish_rate;
        match best(&r.steps) {
            Some(s) => {
                let ratio = s.accepted / f;
                row(
                    "sustained replicated writes/s",
                    format!("{f:.0}"),
                    format!("{:.0}", s.accepted),
                    format!("{ratio:.3}"),
                    format!(
                        ">= {THROUGHPUT_MIN_RATIO}: {}",
                        verdict(ratio >= THROUGHPUT_MIN_RATIO)
                    ),
                );
            }
            None => row(
                "sustained replicated writes/s",
                format!("{f:.0}"),
                "none".into(),
                String::new(),
                format!(
                    "no rate tried was sustained (lowest {:.0}/s)",
                    config.sustain.start_rate
                ),
            ),
        }
    }
    if let Some(c) = &r.catchup {
        row(
            &format!("catch-up apply events/s ({} creates)", c.events),
            "-".into(),
            format!("{:.0}", c.rate),
            format!("{:.3}", c.rate / floor.drain_rate),
            format!(
                ">= {}k/s: {}",
                CATCHUP_MIN_RATE / 1000.0,
                verdict(c.rate >= CATCHUP_MIN_RATE)
            ),
        );
    }
    let rate = |plugin| median(&r.resolver, plugin, |x| x.catchup.rate);
    let cpu = |plugin| median(&r.resolver, plugin, |x| x.catchup.cpu_us);
    let resolved = |plugin| {
        median(&r.resolver, plugin, |x| {
            x.facts.resolved as f64 * 100.0 / x.facts.events.max(1) as f64
        })
    };
    if let (Some(b_rate), Some(p_rate), Some(b_cpu), Some(p_cpu)) =
        (rate(false), rate(true), cpu(false), cpu(true))
    {
        for (plugin, label, rate) in [
            (false, "built-in LWW", b_rate),
            (true, "lww plugin", p_rate),
        ] {
            row(
                &format!(
                    "conflict catch-up events/s, {label} ({:.0}% resolved)",
                    resolved(plugin).unwrap_or(0.0)
                ),
                "-".into(),
                format!("{rate:.0}"),
                format!("{:.3}", rate / floor.drain_rate),
                String::new(),
            );
        }
        let wall = 1.0 - p_rate / b_rate;
        row(
            "resolver plugin cost, wall (1 - plugin/built-in)",
            String::new(),
            format!("{:.1}%", wall * 100.0),
            String::new(),
            format!(
                "<= {:.0}%: {}",
                RESOLVER_MAX_COST * 100.0,
                verdict(wall <= RESOLVER_MAX_COST)
            ),
        );
        // CPU per event is what a shared machine cannot blur: the fold's own cost.
        let extra = p_cpu / b_cpu - 1.0;
        row(
            "resolver plugin cost, C's CPU per event",
            String::new(),
            format!("{:.1}%", extra * 100.0),
            String::new(),
            format!(
                "<= {:.0}%: {} ({p_cpu:.1} vs {b_cpu:.1} µs)",
                RESOLVER_MAX_COST * 100.0,
                verdict(extra <= RESOLVER_MAX_COST),
            ),
        );
    }
    println!(
        "\nfloor: publish->delivered latency over {} one-at-a-time messages; async publish \
         {:.0} msgs/s ({} msgs, {} acks in flight); publish+deliver to a consumer {:.0} msgs/s \
         (the catch-up ratios' denominator).",
        floor.latencies.len(),
        floor.publish_rate,
        config.floor_msgs,
        config.floor_in_flight,
        floor.drain_rate
    );
    if let Some(l) = &r.latency {
        println!(
            "latency: {} writes; A's own answer p50 {:.2} ms; {} never shown by C within 10 s; \
             {} shown before A answered.",
            l.samples.len() + l.missing,
            ms(pct(&l.write, 0.5)),
            l.missing,
            l.before_answer
        );
    }
    if let Some(s) = best(&r.steps) {
        let applied: Vec<String> = s.applied.iter().map(|v| format!("{v:.0}")).collect();
        println!(
            "sustained: best at {} offered: {:.0}/s accepted, applied/s per node [{}], lag \
             growth {:+.0}/s, max lag {}; CPU per write: nodes {:.2} ms, NATS servers {:.2} ms, \
             bench {:.2} ms.",
            s.offered_label(),
            s.accepted,
            applied.join(", "),
            s.lag_growth,
            s.lag_max,
            s.cpu_ms[0],
            s.cpu_ms[1],
            s.cpu_ms[2]
        );
    }
    for s in r.steps.iter().filter(|s| !s.sustained) {
        println!(
            "sustained: at {} offered, {:.0}/s accepted: {}.",
            s.offered_label(),
            s.accepted,
            s.limit
        );
    }
    for c in r
        .catchup
        .iter()
        .chain(r.resolver.iter().map(|x| &x.catchup))
    {
        println!(
            "catch-up {}: {} events, {:.1} µs of C's CPU each, restart to first progress \
             {:.2} s, to caught up {:.2} s, {} dead letters.",
            c.label,
            c.events,
            c.cpu_us,
            c.startup.as_secs_f64(),
            c.total.as_secs_f64(),
            c.dead_letters
        );
    }
}
