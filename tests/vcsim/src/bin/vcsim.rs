//! `vcsim`: run the simulator. The first line of stdout is the SDK URL it serves
//! (a contract tests rely on), e.g. `https://127.0.0.1:PORT/sdk`.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use reset_vcsim::profile::ESX_HOST_NAME;
use reset_vcsim::{EsxHost, Product, Profile, SelfSigned, Sim, SimConfig, VmSpec};

/// A vCenter guest-operations simulator backed by network namespaces.
#[derive(Debug, Parser)]
#[command(name = "vcsim")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A VM: NAME=NETNS (programs run in that namespace) or NAME (on this host).
    /// Repeat for more; a repeated NAME makes an ambiguous inventory.
    #[arg(long = "vm", value_name = "NAME=NETNS")]
    vms: Vec<String>,
    /// Accepted guest credentials USER:PASSWORD (repeatable).
    #[arg(long = "guest-user", value_name = "USER:PASSWORD")]
    guest_users: Vec<String>,
    /// Accepted vCenter credentials USER:PASSWORD [default: any user name].
    #[arg(long = "vc-user", value_name = "USER:PASSWORD")]
    vc_user: Option<String>,
    /// This VM is powered off.
    #[arg(long = "powered-off", value_name = "NAME")]
    powered_off: Vec<String>,
    /// VMware Tools is not running in this VM.
    #[arg(long = "tools-not-running", value_name = "NAME")]
    tools_not_running: Vec<String>,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
    /// The guests' temporary directory [default: /tmp].
    #[arg(long)]
    tmp_dir: Option<PathBuf>,
    /// The guests' process table, kept across restarts [default: a private directory, removed
    /// when vcsim ends on SIGTERM/SIGINT, so nothing survives a restart].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Write the self-signed certificate (PEM) here, for GOVC_TLS_CA_CERTS.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// The product to play: its `about` and the vimServiceVersions.xml it publishes
    /// (vcenter-8.0.3: internal id + prior versions, as recorded from a real one).
    #[arg(long, value_enum, default_value_t = Product::Vcenter803)]
    product: Product,
    /// Answer 404 at /sdk/vimServiceVersions.xml.
    #[arg(long)]
    no_versions_doc: bool,
    /// With --product esxi-8.0.3: the license edition key (eval, esxBasic = the free
    /// vSphere Hypervisor, ...).
    #[arg(long, value_name = "EDITION", default_value = "eval")]
    esxi_license: String,
    /// Send /guestFile transfers to an "ESXi host", as a real vCenter does: transfer URLs
    /// name esx-01.vcsim.invalid (never resolves), served on a second listener (same IP as
    /// --listen, port printed on the second line of stdout) with its own self-signed
    /// certificate; the VM's runtime.host and the HostSystem's name, management IP
    /// (config.virtualNicManagerInfo.netConfig) and summary.config.sslThumbprint lead there.
    #[arg(long)]
    esx_host: bool,
    /// With --esx-host: publish a thumbprint that is not the host certificate's.
    #[arg(long, requires = "esx_host")]
    esx_host_wrong_thumbprint: bool,
    /// Objects per RetrievePropertiesEx page; the rest is served by
    /// ContinueRetrievePropertiesEx.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    page_size: u16,
    /// Write every answered request here, one JSON object per line (listener, HTTP
    /// method and path, status, SOAPAction, vim25 method, body with passwords replaced).
    #[arg(long, value_name = "FILE")]
    request_log: Option<PathBuf>,
}

/// The "ESXi host" listener, its certificate and what the HostSystem publishes about it.
fn esx_host(a: &Args) -> Result<Option<(std::net::TcpListener, SelfSigned, EsxHost)>> {
    if !a.esx_host {
        return Ok(None);
    }
    let listener = std::net::TcpListener::bind(SocketAddr::new(a.listen.ip(), 0))
        .context("binding the ESXi host listener")?;
    let cert = SelfSigned::for_names(&[ESX_HOST_NAME])?;
    let thumbprint = if a.esx_host_wrong_thumbprint {
        SelfSigned::for_names(&[ESX_HOST_NAME])?.thumbprint_sha1()
    } else {
        cert.thumbprint_sha1()
    };
    let host = EsxHost {
        name: ESX_HOST_NAME.to_string(),
        addr: listener.local_addr()?,
        thumbprint,
    };
    Ok(Some((listener, cert, host)))
}

fn pair(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => bail!("{what} {s:?} must be USER:PASSWORD"),
    }
}

fn config(a: &Args) -> Result<SimConfig> {
    let mut vms = Vec::new();
    for v in &a.vms {
        let (name, ns) = v
            .split_once('=')
            .map_or((v.as_str(), ""), |(n, ns)| (n, ns));
        if name.is_empty() {
            bail!("--vm {v:?} has no name");
        }
        vms.push(VmSpec {
            name: name.to_string(),
            netns: (!ns.is_empty()).then(|| ns.to_string()),
            powered_on: !a.powered_off.iter().any(|n| n == name),
            tools_running: !a.tools_not_running.iter().any(|n| n == name),
        });
    }
    for n in a.powered_off.iter().chain(&a.tools_not_running) {
        if !vms.iter().any(|v| &v.name == n) {
            bail!("{n} is not a --vm");
        }
    }
    Ok(SimConfig {
        vms,
        guest_users: a
            .guest_users
            .iter()
            .map(|g| pair(g, "--guest-user"))
            .collect::<Result<_>>()?,
        vc_user: a
            .vc_user
            .as_deref()
            .map(|v| pair(v, "--vc-user"))
            .transpose()?,
        tmp_dir: a.tmp_dir.clone(),
        state_dir: a.state_dir.clone(),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let cfg = config(&args)?;
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = if args.plain_http {
        None
    } else {
        Some(SelfSigned::generate()?)
    };
    if let (Some(t), Some(p)) = (&tls, &args.cert_out) {
        std::fs::write(p, &t.cert_pem).with_context(|| format!("writing {}", p.display()))?;
    }
    let esx = esx_host(&args)?;
    let profile = Profile {
        product: args.product,
        no_versions_doc: args.no_versions_doc,
        esxi_license: args.esxi_license.clone(),
        esx_host: esx.as_ref().map(|(_, _, h)| h.clone()),
        page_size: usize::from(args.page_size),
    };
    // Without --state-dir the process table is private to this process: remove it on the way out.
    let private = args.state_dir.is_none().then(|| cfg.tools_dir());
    let mut sim = Sim::new(cfg).with_profile(profile);
    if let Some(path) = &args.request_log {
        sim = sim
            .with_request_log(path)
            .with_context(|| format!("creating {}", path.display()))?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    // One write: a reader that takes only the first line may close the pipe after it.
    let mut lines = format!("{scheme}://{addr}/sdk\n");
    if let Some((_, _, h)) = &esx {
        lines.push_str(&format!("esx-host https://{}/ as {}\n", h.addr, h.name));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(lines.as_bytes())?;
    out.flush()?;
    drop(out);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let host = async {
        match esx {
            Some((l, cert, _)) => reset_vcsim::serve_esx_host(sim.clone(), l, cert).await,
            None => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        r = reset_vcsim::serve(sim.clone(), listener, tls) => r.map_err(anyhow::Error::from),
        r = host => r.map_err(anyhow::Error::from),
        _ = term.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    if let Some(dir) = private {
        let _ = std::fs::remove_dir_all(dir);
    }
    served
}
