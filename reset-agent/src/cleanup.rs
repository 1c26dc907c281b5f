//! `reset-agent cleanup`: removes what a previous run could have left. With owner tables and TCX
//! links a crashed agent leaves nothing, so this matters on old kernels (plain tables, netlink tc
//! filters). Idempotent; says what it removed.
use crate::{ebpf, instance, nft};

/// Removes leftovers; returns a line per thing removed.
pub fn remove_stale(interface: &str) -> Vec<String> {
    let mut removed = Vec::new();
    match nft::remove_stale_table() {
        Ok(true) => removed.push(format!("nftables table inet {}", nft::TABLE_NAME)),
        Ok(false) => {}
        Err(e) => removed.push(format!(
            "could not remove table inet {}: {e}",
            nft::TABLE_NAME
        )),
    }
    if crate::host::interface_exists(interface) {
        let n = ebpf::remove_stale_filters(interface);
        if n > 0 {
            removed.push(format!("{n} tc filter(s) on {interface}"));
        }
    }
    removed
}

/// The `cleanup` command. Exit code 0 when the host is clean afterwards.
pub fn command(interface: &str) -> i32 {
    if let Some(holder) = instance::active() {
        println!(
            "a reset-agent run is active in this network namespace ({holder}); its table and \
             programs are removed when it ends. Stop it with SIGTERM to end it early."
        );
        return 1;
    }
    let removed = remove_stale(interface);
    if removed.is_empty() {
        println!(
            "nothing to clean up: no table inet {}, no tc programs of ours on {interface}",
            nft::TABLE_NAME
        );
    } else {
        for r in &removed {
            println!("removed {r}");
        }
    }
    let left_table = matches!(nft::table_exists(), Ok(true));
    let left_progs =
        crate::host::interface_exists(interface) && !ebpf::attached_programs(interface).is_empty();
    if left_table || left_progs {
        println!("still present after cleanup: table {left_table}, tc programs {left_progs}");
        return 1;
    }
    0
}
