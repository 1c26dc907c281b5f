//! Guest operations: the checks Tools makes (power, Tools, guest login) and the
//! file and process calls. Guest paths are real paths on this host: the VMs'
//! namespaces share its filesystem.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::model::{Sim, Transfer};
use crate::process::{self, Program};
use crate::soap::{Fault, faults, leaf};
use crate::xml::{Node, esc};

/// A guest call that passed the checks.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The VM index.
    pub vm: usize,
    /// The guest user.
    pub user: String,
    /// The request.
    pub req: &'a Node,
}

/// Power, Tools, then guest credentials, in the order vCenter checks them.
pub fn check<'a>(sim: &Sim, req: &'a Node) -> Result<Ctx<'a>, Fault> {
    let vm_node = req
        .child("vm")
        .ok_or_else(|| faults::invalid_argument("vm"))?;
    let id = vm_node.text.trim();
    let vm = sim
        .vm_index(id)
        .ok_or_else(|| faults::managed_object_not_found("VirtualMachine", id))?;
    let spec = &sim.cfg.vms[vm];
    if !spec.powered_on {
        return Err(faults::invalid_power_state());
    }
    if !spec.tools_running {
        return Err(faults::guest_operations_unavailable());
    }
    let auth = req
        .child("auth")
        .ok_or_else(|| faults::invalid_argument("auth"))?;
    let user = auth.text_of("username").unwrap_or("");
    let password = auth.child("password").map_or("", |p| p.text.as_str());
    if !sim.guest_login_ok(user, password) {
        return Err(faults::invalid_guest_login());
    }
    Ok(Ctx {
        vm,
        user: user.to_string(),
        req,
    })
}

fn io_fault(path: &Path, e: &std::io::Error) -> Fault {
    match e.kind() {
        std::io::ErrorKind::NotFound => faults::file_not_found(&path.display().to_string()),
        std::io::ErrorKind::PermissionDenied => faults::guest_permission_denied(),
        std::io::ErrorKind::AlreadyExists => {
            faults::file_already_exists(&path.display().to_string())
        }
        _ => faults::system_error(&format!("{}: {e}", path.display())),
    }
}

fn abs(req: &Node, field: &'static str) -> Result<PathBuf, Fault> {
    let p = req
        .text_of(field)
        .ok_or_else(|| faults::invalid_argument(field))?;
    if !p.starts_with('/') {
        return Err(faults::invalid_argument(field));
    }
    Ok(PathBuf::from(p))
}

fn mode_of(req: &Node) -> Option<u32> {
    req.child("fileAttributes")?
        .text_of("permissions")?
        .parse()
        .ok()
}

/// Like ESXi, `*` (the host called); like a vCenter in "ESXi host" mode, the host's name and
/// the transfer listener's port, always https.
fn transfer_url(sim: &Sim, scheme: &str, vm: usize, tok: &str) -> String {
    let query = format!("guestFile?id={}&token={tok}", vm + 1);
    esc(&match &sim.profile.esx_host {
        Some(h) => format!("https://{}:{}/{query}", h.name, h.addr.port()),
        None => format!("{scheme}://*/{query}"),
    })
}

fn time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Run one guest method; returns the inner XML of its reply.
pub async fn call(sim: &Sim, scheme: &str, method: &str, cx: Ctx<'_>) -> Result<String, Fault> {
    let req = cx.req;
    match method {
        "ValidateCredentialsInGuest" => Ok(String::new()),
        "CreateTemporaryDirectoryInGuest" => {
            let base = match req.text_of("directoryPath").filter(|p| !p.is_empty()) {
                Some(p) => PathBuf::from(p),
                None => sim.cfg.guest_tmp(),
            };
            let prefix = req.text_of("prefix").unwrap_or("");
            let suffix = req.text_of("suffix").unwrap_or("");
            for _ in 0..16 {
                let dir = base.join(format!("{prefix}{}{suffix}", &crate::model::token()[..12]));
                match std::fs::create_dir(&dir) {
                    Ok(()) => {
                        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                            .map_err(|e| io_fault(&dir, &e))?;
                        return Ok(leaf("returnval", &dir.display().to_string()));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io_fault(&base, &e)),
                }
            }
            Err(faults::system_error(
                "cannot create a unique temporary directory",
            ))
        }
        "MakeDirectoryInGuest" => {
            let p = abs(req, "directoryPath")?;
            let r = if req.text_of("createParentDirectories") == Some("true") {
                std::fs::create_dir_all(&p)
            } else {
                std::fs::create_dir(&p)
            };
            r.map_err(|e| io_fault(&p, &e)).map(|()| String::new())
        }
        "DeleteDirectoryInGuest" => {
            let p = abs(req, "directoryPath")?;
            if !p.is_dir() {
                return Err(faults::file_not_found(&p.display().to_string()));
            }
            let r = if req.text_of("recursive") == Some("true") {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_dir(&p)
            };
            r.map_err(|e| io_fault(&p, &e)).map(|()| String::new())
        }
        "DeleteFileInGuest" => {
            let p = abs(req, "filePath")?;
            let md = std::fs::symlink_metadata(&p).map_err(|e| io_fault(&p, &e))?;
            if md.is_dir() {
                return Err(faults::not_a_file(&p.display().to_string()));
            }
            std::fs::remove_file(&p)
                .map_err(|e| io_fault(&p, &e))
                .map(|()| String::new())
        }
        "ChangeFileAttributesInGuest" => {
            let p = abs(req, "guestFilePath")?;
            std::fs::metadata(&p).map_err(|e| io_fault(&p, &e))?;
            if let Some(mode) = mode_of(req) {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| io_fault(&p, &e))?;
            }
            Ok(String::new())
        }
        "InitiateFileTransferToGuest" => {
            let p = abs(req, "guestFilePath")?;
            let parent = p.parent().unwrap_or(Path::new("/"));
            if !parent.is_dir() {
                return Err(faults::file_not_found(&parent.display().to_string()));
            }
            if p.is_dir() {
                return Err(faults::not_a_file(&p.display().to_string()));
            }
            if p.exists() && req.text_of("overwrite") != Some("true") {
                return Err(faults::file_already_exists(&p.display().to_string()));
            }
            let size = req
                .text_of("fileSize")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let tok = sim.add_transfer(Transfer::Upload {
                path: p,
                mode: mode_of(req),
                size,
            });
            Ok(format!(
                "<returnval>{}</returnval>",
                transfer_url(sim, scheme, cx.vm, &tok)
            ))
        }
        "InitiateFileTransferFromGuest" => {
            let p = abs(req, "guestFilePath")?;
            let md = std::fs::metadata(&p).map_err(|e| io_fault(&p, &e))?;
            if !md.is_file() {
                return Err(faults::not_a_file(&p.display().to_string()));
            }
            let tok = sim.add_transfer(Transfer::Download { path: p });
            let mtime = md.modified().map(time).unwrap_or_default();
            Ok(format!(
                r#"<returnval><attributes xsi:type="GuestPosixFileAttributes">{}{}{}{}{}</attributes>{}<url>{}</url></returnval>"#,
                leaf("modificationTime", &mtime),
                leaf("accessTime", &mtime),
                leaf("ownerId", &md.uid().to_string()),
                leaf("groupId", &md.gid().to_string()),
                leaf("permissions", &(md.mode() & 0o7777).to_string()),
                leaf("size", &md.len().to_string()),
                transfer_url(sim, scheme, cx.vm, &tok)
            ))
        }
        "StartProgramInGuest" => {
            let spec = req
                .child("spec")
                .ok_or_else(|| faults::invalid_argument("spec"))?;
            let prog = Program {
                path: spec.text_of("programPath").unwrap_or("").to_string(),
                arguments: spec
                    .child("arguments")
                    .map(|a| a.text.clone())
                    .unwrap_or_default(),
                working_dir: spec
                    .text_of("workingDirectory")
                    .filter(|w| !w.is_empty())
                    .map(str::to_string),
                env: spec.all("envVariables").map(|e| e.text.clone()).collect(),
            };
            let pid = process::start(sim, cx.vm, &cx.user, &prog).await?;
            Ok(leaf("returnval", &pid.to_string()))
        }
        "ListProcessesInGuest" => {
            let pids: Vec<i64> = req
                .all("pids")
                .filter_map(|p| p.text.trim().parse().ok())
                .collect();
            let mut out = String::new();
            for p in sim.procs(cx.vm, &pids) {
                out.push_str("<returnval>");
                out.push_str(&leaf("name", &p.name));
                out.push_str(&leaf("pid", &p.pid.to_string()));
                out.push_str(&leaf("owner", &p.owner));
                out.push_str(&leaf("cmdLine", &p.cmd_line));
                out.push_str(&leaf("startTime", &time(p.start)));
                if let Some(end) = p.end {
                    out.push_str(&leaf("endTime", &time(end)));
                }
                if let Some(code) = p.exit {
                    out.push_str(&leaf("exitCode", &code.to_string()));
                }
                out.push_str("</returnval>");
            }
            Ok(out)
        }
        "TerminateProcessInGuest" => {
            let pid: i64 = req
                .text_of("pid")
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| faults::invalid_argument("pid"))?;
            process::terminate(sim, cx.vm, pid)
                .await
                .map(|()| String::new())
        }
        other => Err(faults::method_not_found("guestOperations", other)),
    }
}

/// Methods handled here, with the manager type they belong to.
pub fn manager_of(method: &str) -> Option<&'static str> {
    Some(match method {
        "ValidateCredentialsInGuest" => "GuestAuthManager",
        "StartProgramInGuest" | "ListProcessesInGuest" | "TerminateProcessInGuest" => {
            "GuestProcessManager"
        }
        "CreateTemporaryDirectoryInGuest"
        | "MakeDirectoryInGuest"
        | "DeleteDirectoryInGuest"
        | "DeleteFileInGuest"
        | "ChangeFileAttributesInGuest"
        | "InitiateFileTransferToGuest"
        | "InitiateFileTransferFromGuest" => "GuestFileManager",
        _ => return None,
    })
}
