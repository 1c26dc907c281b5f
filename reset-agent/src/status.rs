//! `reset-agent status`: is a fault active in this network namespace, since when, its table and
//! rule, and its live counts (asked of the running agent through its run lock). With no run,
//! it says so and checks that nothing of one is left (table, programs).
use crate::{ebpf, instance, lifecycle::status::Status, nft};

/// Exit code: 0 (a run is active, or none is and nothing is left), 1 (none is, but a table or
/// programs of one are: run `reset-agent cleanup`).
pub fn command(iface: &str, json: bool) -> i32 {
    if let Some(s) = instance::status() {
        if json {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            v["active"] = true.into();
            println!("{v}");
        } else {
            print!("{}", text(&s));
        }
        return 0;
    }
    let table = matches!(nft::table_exists(), Ok(true));
    let programs =
        crate::host::interface_exists(iface) && !ebpf::attached_programs(iface).is_empty();
    if json {
        println!(
            "{}",
            serde_json::json!({"active": false, "table_left": table, "programs_left": programs})
        );
    } else {
        println!("no fault is active in this network namespace");
        println!(
            "table inet {}: {}",
            nft::TABLE_NAME,
            if table {
                "PRESENT (left by a run: run `reset-agent cleanup`)"
            } else {
                "absent"
            }
        );
        println!(
            "tc programs on {iface}: {}",
            if programs {
                "PRESENT (run `reset-agent cleanup`)"
            } else {
                "none of ours"
            }
        );
    }
    if table || programs { 1 } else { 0 }
}

/// The human form.
fn text(s: &Status) -> String {
    let c = &s.counts;
    let mut out = format!(
        "fault active: {} ({})\n  phase            {}{}\n",
        s.holder,
        s.mode,
        s.phase,
        s.seconds_left
            .map_or(String::new(), |l| format!(", {l} s left in the window"))
    );
    if let Some(at) = &s.window_opened_at {
        out += &format!("  window opened    {at}\n");
    }
    out += &format!(
        "  fault            {}% of {} to :{} on {}, reset {} ms after the first request byte\n",
        s.toxicity_percent,
        if s.unit == "request" {
            "requests"
        } else {
            "new connections"
        },
        s.target_service_port,
        s.network_interface,
        s.reset_timeout_ms
    );
    if let (Some(t), Some(r)) = (&s.table, &s.rule) {
        out += &format!("  table            {t}\n  rule             {r}\n");
    }
    out += &format!(
        "  counts           flows seen {} selected {}, requests seen {} selected {}, proxy accepted {}, resets issued {} observed {}, held {}\n",
        c.flows_seen,
        c.flows_selected,
        c.requests_seen,
        c.requests_selected,
        c.proxy_accepted,
        c.resets_issued,
        c.resets_observed,
        c.held
    );
    if let Some(at) = &s.counts_at {
        out += &format!("  counts read at   {at} (refreshed every 500 ms)\n");
    }
    out
}
