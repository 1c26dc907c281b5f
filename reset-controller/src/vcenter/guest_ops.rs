//! Guest operations requests and replies (GuestAuthManager, GuestFileManager,
//! GuestProcessManager), as pure encoders and decoders.

use super::soap::{MoRef, Request, leaf};
use super::xml::Element;
use crate::secret::Secret;

/// Guest credentials: NamePasswordAuthentication.
#[derive(Debug, Clone)]
pub struct GuestAuth {
    /// VM_USER_NAME.
    pub user: String,
    /// VM_PASSWORD.
    pub password: Secret,
}

impl GuestAuth {
    fn xml(&self) -> String {
        format!(
            r#"<auth xsi:type="NamePasswordAuthentication"><interactiveSession>false</interactiveSession>{}{}</auth>"#,
            leaf("username", &self.user),
            leaf("password", self.password.expose())
        )
    }
}

/// Start a guest operation request: `_this`, `vm`, `auth`.
pub fn guest_request(method: &'static str, mgr: &MoRef, vm: &MoRef, auth: &GuestAuth) -> Request {
    Request::new(method, mgr).moref("vm", vm).raw(&auth.xml())
}

/// POSIX file attributes carrying only a mode (0755 is sent as 493).
pub fn posix_mode(mode: u32) -> String {
    format!(
        r#"<fileAttributes xsi:type="GuestPosixFileAttributes">{}</fileAttributes>"#,
        leaf("permissions", &mode.to_string())
    )
}

/// ValidateCredentialsInGuest.
pub fn validate_credentials(auth_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth) -> Request {
    guest_request("ValidateCredentialsInGuest", auth_mgr, vm, auth)
}

/// CreateTemporaryDirectoryInGuest(prefix, suffix) under the guest's temp dir.
pub fn create_temp_dir(file_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, prefix: &str) -> Request {
    guest_request("CreateTemporaryDirectoryInGuest", file_mgr, vm, auth)
        .text("prefix", prefix)
        .text("suffix", "")
}

/// MakeDirectoryInGuest.
pub fn make_dir(file_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, path: &str) -> Request {
    guest_request("MakeDirectoryInGuest", file_mgr, vm, auth)
        .text("directoryPath", path)
        .text("createParentDirectories", "false")
}

/// DeleteDirectoryInGuest(recursive).
pub fn delete_dir(file_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, path: &str) -> Request {
    guest_request("DeleteDirectoryInGuest", file_mgr, vm, auth)
        .text("directoryPath", path)
        .text("recursive", "true")
}

/// DeleteFileInGuest.
pub fn delete_file(file_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, path: &str) -> Request {
    guest_request("DeleteFileInGuest", file_mgr, vm, auth).text("filePath", path)
}

/// ChangeFileAttributesInGuest with a POSIX mode.
pub fn chmod(file_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, path: &str, mode: u32) -> Request {
    guest_request("ChangeFileAttributesInGuest", file_mgr, vm, auth)
        .text("guestFilePath", path)
        .raw(&posix_mode(mode))
}

/// InitiateFileTransferToGuest (overwrite) of `size` bytes with a POSIX mode.
pub fn upload(
    file_mgr: &MoRef,
    vm: &MoRef,
    auth: &GuestAuth,
    path: &str,
    mode: u32,
    size: u64,
) -> Request {
    guest_request("InitiateFileTransferToGuest", file_mgr, vm, auth)
        .text("guestFilePath", path)
        .raw(&posix_mode(mode))
        .text("fileSize", &size.to_string())
        .text("overwrite", "true")
}

/// InitiateFileTransferFromGuest.
pub fn download(file_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, path: &str) -> Request {
    guest_request("InitiateFileTransferFromGuest", file_mgr, vm, auth).text("guestFilePath", path)
}

/// What to start in the guest. Linux Tools runs `programPath arguments` through
/// bash, so arguments must be quoted with [`shell_quote`]; `env` replaces the whole
/// environment of the program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Absolute path of the program.
    pub program: String,
    /// The argument string, already quoted for bash.
    pub arguments: String,
    /// Working directory.
    pub working_dir: Option<String>,
    /// `NAME=value` entries; never secrets.
    pub env: Vec<String>,
}

/// StartProgramInGuest.
pub fn start_program(
    proc_mgr: &MoRef,
    vm: &MoRef,
    auth: &GuestAuth,
    spec: &ProgramSpec,
) -> Request {
    let mut s = String::from(r#"<spec xsi:type="GuestProgramSpec">"#);
    s.push_str(&leaf("programPath", &spec.program));
    s.push_str(&leaf("arguments", &spec.arguments));
    if let Some(wd) = &spec.working_dir {
        s.push_str(&leaf("workingDirectory", wd));
    }
    for e in &spec.env {
        s.push_str(&leaf("envVariables", e));
    }
    s.push_str("</spec>");
    guest_request("StartProgramInGuest", proc_mgr, vm, auth).raw(&s)
}

/// ListProcessesInGuest for these pids.
pub fn list_processes(proc_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, pids: &[i64]) -> Request {
    pids.iter().fold(
        guest_request("ListProcessesInGuest", proc_mgr, vm, auth),
        |r, p| r.text("pids", &p.to_string()),
    )
}

/// TerminateProcessInGuest.
pub fn terminate(proc_mgr: &MoRef, vm: &MoRef, auth: &GuestAuth, pid: i64) -> Request {
    guest_request("TerminateProcessInGuest", proc_mgr, vm, auth).text("pid", &pid.to_string())
}

/// One GuestProcessInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: i64,
    /// Command line as the guest reports it.
    pub cmd_line: String,
    /// The guest user running it.
    pub owner: String,
    /// When it started, as the guest reports it.
    pub start_time: Option<String>,
    /// Set once the process exited.
    pub end_time: Option<String>,
    /// Exit code; absent with `end_time` set means 0.
    pub exit_code: Option<i32>,
}

impl ProcessInfo {
    /// The exit code once ended (missing exitCode with endTime set means 0).
    pub fn exited(&self) -> Option<i32> {
        self.end_time.as_ref().map(|_| self.exit_code.unwrap_or(0))
    }
}

/// Decode a ListProcessesInGuest reply.
pub fn parse_processes(reply: &Element) -> Vec<ProcessInfo> {
    reply
        .children_named("returnval")
        .filter_map(|p| {
            Some(ProcessInfo {
                pid: p.child_text("pid")?.trim().parse().ok()?,
                cmd_line: p.child_text("cmdLine").unwrap_or("").to_string(),
                owner: p.child_text("owner").unwrap_or("").trim().to_string(),
                start_time: p
                    .child_text("startTime")
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
                end_time: p
                    .child_text("endTime")
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
                exit_code: p.child_text("exitCode").and_then(|c| c.trim().parse().ok()),
            })
        })
        .collect()
}

/// Decode a StartProgramInGuest reply: the pid.
pub fn parse_pid(reply: &Element) -> Option<i64> {
    reply.child_text("returnval")?.trim().parse().ok()
}

/// Decode a reply whose returnval is a string (transfer URL, temp dir path).
pub fn parse_string(reply: &Element) -> Option<String> {
    let s = reply.child_text("returnval")?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Decode InitiateFileTransferFromGuest: (url, size).
pub fn parse_transfer_from(reply: &Element) -> Option<(String, u64)> {
    let rv = reply.child("returnval")?;
    let url = rv.child_text("url")?.trim().to_string();
    let size = rv
        .child_text("size")
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Some((url, size))
}

/// Quote one word for bash: `'...'` with embedded quotes escaped.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}
