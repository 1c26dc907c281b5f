//! nftables: the rule that steers selected connections to the proxy.
//!
//! Owns the one table `inet reset_peer`, built by nftnl and sent over mnl in one batch per
//! change (never by running `nft`), every ack checked, the table and its chain read back after
//! creation. The table carries NFT_TABLE_F_OWNER, so it belongs to the socket held in
//! `Redirect` and the kernel deletes it if the agent dies. Only this module touches netfilter
//! netlink; `ext` holds the little unsafe code that nftnl's extension traits need.
//!
//! Steering is nftables TPROXY by default: the packet keeps its destination (a local address and
//! the service's port), so no NAT, no conntrack, and a guest firewall's input chain sees the
//! service port it already accepts. Kernels without nft_tproxy (< 4.19) get the NAT `redirect`
//! fallback.
mod ext;
mod io;
mod plan;
#[cfg(test)]
mod tests;

use std::io as stdio;

use nftnl::{ProtoFamily, nftnl_sys::libc};

use ext::NFT_TABLE_F_OWNER;
pub use ext::{ChainInfo, TableInfo};
use io::Netlink;
pub use plan::{RedirectSpec, TABLE_NAME};

/// How the rule hands a connection to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Steering {
    /// `tproxy to :PROXY_PORT` in a prerouting filter chain: no NAT, no conntrack.
    Tproxy,
    /// `redirect to :PROXY_PORT` in a nat chain (conntrack): kernels without nft_tproxy.
    Redirect,
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "cannot open a netfilter netlink socket: {0}; is nf_tables available (modprobe nf_tables)?"
    )]
    Socket(#[source] stdio::Error),
    #[error("the kernel refused the nftables change ({what}): {source}")]
    Rejected {
        what: &'static str,
        #[source]
        source: stdio::Error,
    },
    #[error(
        "table inet {TABLE_NAME} already exists and belongs to a running process: another reset-peer run is active in this network namespace; wait for it or stop it"
    )]
    Busy,
    #[error("read-back failed: {0}")]
    ReadBack(&'static str),
}

/// A live steering rule. Dropping it closes the socket, and the kernel removes an owned table.
pub struct Redirect {
    nl: Netlink,
    /// False on kernels < 5.12, where the table is a normal one (removed by cleanup).
    pub owned: bool,
    pub steering: Steering,
    /// Why the steering or the table kind is not the preferred one, if it is not.
    pub fallbacks: Vec<String>,
    /// The rule as `nft list table` shows it (for `reset-agent status`).
    pub rule_text: String,
}

/// Errors that mean "this kernel lacks the feature", so a fallback may work: EOPNOTSUPP (owner
/// flag, tproxy in this family), ENOENT (expression module missing), EPROTONOSUPPORT.
fn unsupported(e: &NftError) -> bool {
    matches!(e, NftError::Rejected { source, .. }
        if matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOENT | libc::EPROTONOSUPPORT)))
}

impl Redirect {
    /// Creates the table, chain and rule in one batch, then reads them back. Tries TPROXY with
    /// an owner table first and falls back (plain table, then NAT redirect) only when the
    /// kernel says it lacks the feature; `hints` rules out what the host is known to lack.
    pub fn install(spec: &RedirectSpec, hints: Hints) -> Result<Redirect, NftError> {
        let mut nl = Netlink::open().map_err(NftError::Socket)?;
        let mut fallbacks = Vec::new();
        let mut steerings = vec![Steering::Tproxy, Steering::Redirect];
        if let Some(why) = hints.no_tproxy {
            fallbacks.push(format!("steering by NAT redirect: {why}"));
            steerings.retain(|s| *s != Steering::Tproxy);
        }
        let mut owner = vec![true, false];
        if let Some(why) = hints.no_owner {
            fallbacks.push(format!("plain table: {why}"));
            owner.retain(|o| !o);
        }
        let mut last = None;
        for steering in steerings {
            for &owned in &owner {
                let flags = if owned { NFT_TABLE_F_OWNER } else { 0 };
                match apply(
                    &mut nl,
                    &plan::install(spec, steering, flags),
                    "create table",
                ) {
                    Ok(()) => {
                        let this = Redirect {
                            nl,
                            owned,
                            steering,
                            fallbacks,
                            rule_text: plan::rule_text(spec, steering),
                        };
                        return this.read_back();
                    }
                    Err(NftError::Rejected { source, .. })
                        if source.raw_os_error() == Some(libc::EPERM) =>
                    {
                        return Err(NftError::Busy);
                    }
                    Err(e) if unsupported(&e) => {
                        let table = if owned {
                            "an owner table"
                        } else {
                            "a plain table"
                        };
                        fallbacks.push(format!("{steering:?} with {table} refused: {e}"));
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last.unwrap_or(NftError::ReadBack("no steering could be installed")))
    }

    fn read_back(mut self) -> Result<Redirect, NftError> {
        let tables = list_tables_on(&mut self.nl)?;
        let ours = tables
            .iter()
            .find(|t| is_ours(t))
            .ok_or(NftError::ReadBack("the table is not listed after creation"))?;
        if self.owned && ours.flags & NFT_TABLE_F_OWNER == 0 {
            return Err(NftError::ReadBack("the table lacks the owner flag"));
        }
        if ours.use_count < 1 {
            return Err(NftError::ReadBack("the table has no chain"));
        }
        let chains = list_chains_on(&mut self.nl)?;
        let (kind, priority) = match self.steering {
            Steering::Tproxy => ("filter", -150),
            Steering::Redirect => ("nat", -110),
        };
        let chain_ok = chains.iter().any(|c| {
            c.table == TABLE_NAME
                && c.name == plan::CHAIN_NAME
                && c.hook == libc::NF_INET_PRE_ROUTING as u32
                && c.kind == kind
                && c.priority == priority
        });
        if !chain_ok {
            return Err(NftError::ReadBack(
                "the prerouting chain is not listed as created",
            ));
        }
        Ok(self)
    }

    /// Stops steering new connections; connections already steered keep working until they
    /// are reset (see `plan::stop_steering`).
    pub fn stop_steering(&mut self) -> Result<(), NftError> {
        apply(
            &mut self.nl,
            &plan::stop_steering(self.steering),
            "stop steering",
        )
    }

    /// Deletes the table through the owning socket and checks it is gone.
    pub fn remove(mut self) -> Result<(), NftError> {
        apply(&mut self.nl, &plan::remove(), "delete table")?;
        if list_tables_on(&mut self.nl)?.iter().any(is_ours) {
            return Err(NftError::ReadBack(
                "the table is still listed after deletion",
            ));
        }
        Ok(())
    }
}

/// What the host is known to lack before anything is tried (kernel version, libnftnl version).
#[derive(Debug, Clone, Default)]
pub struct Hints {
    pub no_tproxy: Option<String>,
    pub no_owner: Option<String>,
}

/// Whether the libnftnl this agent runs with can build the tproxy expression (>= 1.1.1).
pub fn libnftnl_has_tproxy() -> bool {
    ext::libnftnl_knows(c"tproxy")
}

/// What this host lacks, from the kernel version the agent assumes (see `host`) and the
/// libnftnl it runs with. The kernel still has the last word: `install` falls back on its
/// refusal too.
pub fn hints(host: &crate::host::HostFacts) -> Hints {
    let kernel = host.kernel;
    let no_tproxy = if !libnftnl_has_tproxy() {
        Some("this libnftnl is older than 1.1.1 and cannot build the tproxy expression".into())
    } else {
        kernel
            .filter(|v| *v < (4, 19))
            .map(|(a, b)| format!("kernel {a}.{b} has no nft_tproxy (4.19 or later)"))
    };
    let no_owner = kernel
        .filter(|v| *v < (5, 12))
        .map(|(a, b)| format!("kernel {a}.{b} has no owner tables (5.12 or later)"));
    Hints {
        no_tproxy,
        no_owner,
    }
}

fn apply(
    nl: &mut Netlink,
    batch: &nftnl::FinalizedBatch,
    what: &'static str,
) -> Result<(), NftError> {
    nl.apply(batch)
        .map_err(|source| NftError::Rejected { what, source })
}

fn is_ours(t: &TableInfo) -> bool {
    t.name.as_bytes() == TABLE_NAME.as_bytes() && t.family == ProtoFamily::Inet as u32
}

fn list_tables_on(nl: &mut Netlink) -> Result<Vec<TableInfo>, NftError> {
    nl.dump(libc::NFT_MSG_GETTABLE as u16, ext::table_cb)
        .map_err(|source| NftError::Rejected {
            what: "list tables",
            source,
        })
}

fn list_chains_on(nl: &mut Netlink) -> Result<Vec<ChainInfo>, NftError> {
    nl.dump(libc::NFT_MSG_GETCHAIN as u16, ext::chain_cb)
        .map_err(|source| NftError::Rejected {
            what: "list chains",
            source,
        })
}

fn open() -> Result<Netlink, NftError> {
    Netlink::open().map_err(NftError::Socket)
}

/// Lists the tables in this network namespace (for cleanup, preflight and tests).
pub fn list_tables() -> Result<Vec<TableInfo>, NftError> {
    list_tables_on(&mut open()?)
}

/// Lists the base chains (those on a hook) in this network namespace.
pub fn list_base_chains() -> Result<Vec<ChainInfo>, NftError> {
    list_chains_on(&mut open()?)
}

/// Whether `inet reset_peer` exists in this network namespace.
pub fn table_exists() -> Result<bool, NftError> {
    Ok(list_tables()?.iter().any(is_ours))
}

/// Removes a leftover (not owned) `inet reset_peer` table. Returns whether one was removed.
/// An owned table belongs to a live agent and is refused with `Busy`.
pub fn remove_stale_table() -> Result<bool, NftError> {
    let mut nl = open()?;
    let tables = list_tables_on(&mut nl)?;
    let Some(t) = tables.iter().find(|t| is_ours(t)) else {
        return Ok(false);
    };
    if t.flags & NFT_TABLE_F_OWNER != 0 {
        return Err(NftError::Busy);
    }
    apply(&mut nl, &plan::remove(), "delete stale table")?;
    Ok(true)
}

/// Input-hook chains of other tables whose policy is drop: a guest firewall (firewalld,
/// iptables-nft). With TPROXY it sees the service's port (which it must accept for the service
/// to work at all); with the NAT redirect it sees PROXY_PORT and would drop it.
pub fn dropping_input_chains() -> Result<Vec<String>, NftError> {
    Ok(list_base_chains()?
        .into_iter()
        .filter(|c| {
            c.table != TABLE_NAME
                && c.hook == libc::NF_INET_LOCAL_IN as u32
                && c.policy == libc::NF_DROP as u32
        })
        .map(|c| format!("{} {} {}", family_name(c.family), c.table, c.name))
        .collect())
}

/// Legacy (non-nft) iptables filter tables in this namespace, which netlink cannot list.
pub fn legacy_iptables_filters() -> bool {
    ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|s| s.lines().any(|l| l.trim() == "filter")))
}

fn family_name(family: u32) -> &'static str {
    match family as i32 {
        libc::NFPROTO_INET => "inet",
        libc::NFPROTO_IPV4 => "ip",
        libc::NFPROTO_IPV6 => "ip6",
        libc::NFPROTO_BRIDGE => "bridge",
        libc::NFPROTO_NETDEV => "netdev",
        libc::NFPROTO_ARP => "arp",
        _ => "?",
    }
}
