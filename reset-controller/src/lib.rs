//! reset-controller: the CLI users run to inject the HTTP reset-peer fault into
//! vSphere VMs.
//!
//! It owns the vim25 SOAP client (`vcenter`), the run configuration (`config`), the
//! per-VM pipeline and the parallel/serial schedule (`orchestrate`), and the report
//! and table (`report`, `output`), the HTTP probe with its SLO verdict (`probe`) and
//! the Prometheus metrics endpoint (`metrics`). It logs in to vCenter, uploads `reset-agent`
//! into each guest through VMware Tools guest operations, starts it, polls it,
//! collects its report and removes every file it put there.
//!
//! It must not: touch the guest's network itself (the agent does), put a secret
//! (VM_PASSWORD, GOVC_PASSWORD) in a process argument, a log line, a report or a
//! guest file, or talk to anything but the vCenter it is pointed at, the probe URL
//! it is given and the scrapers of its own metrics endpoint.
#![forbid(unsafe_code)]

pub mod agent_binary;
pub mod agent_config;
pub mod config;
pub mod metrics;
pub mod orchestrate;
pub mod output;
pub mod probe;
pub mod report;
pub mod secret;
pub mod vcenter;
