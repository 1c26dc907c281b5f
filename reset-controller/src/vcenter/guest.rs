//! A handle on one VM's guest: guest operations plus /guestFile transfers.

use std::time::Duration;

use super::client::{ReadError, read_bounded};
use super::error::{Context, VcError};
use super::guest_ops::{self as ops, GuestAuth, ProcessInfo, ProgramSpec};
use super::inventory::{GuestManagers, VmInfo};
use super::session::Session;
use super::soap::{MoRef, Request};
use super::transfer::{self, Target};
use super::xml::Element;

/// Time allowed for one file transfer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

/// Guest operations on one VM with one set of guest credentials.
#[derive(Debug, Clone)]
pub struct Guest {
    session: Session,
    managers: GuestManagers,
    vm: VmInfo,
    auth: GuestAuth,
}

impl Guest {
    /// A handle; no call is made.
    pub fn new(session: Session, managers: GuestManagers, vm: VmInfo, auth: GuestAuth) -> Self {
        Self {
            session,
            managers,
            vm,
            auth,
        }
    }

    /// The VM.
    pub fn vm(&self) -> &VmInfo {
        &self.vm
    }

    /// The guest user.
    pub fn user(&self) -> &str {
        &self.auth.user
    }

    async fn call(&self, req: Request) -> Result<Element, VcError> {
        let cx = Context {
            vm: &self.vm.name,
            guest_user: &self.auth.user,
            ..Context::default()
        };
        self.session.call(req, cx).await
    }

    fn mgr<'a>(
        &self,
        m: &'a Option<super::soap::MoRef>,
        what: &str,
    ) -> Result<&'a super::soap::MoRef, VcError> {
        m.as_ref()
            .ok_or_else(|| VcError::GuestOperationsUnavailable {
                vm: self.vm.name.clone(),
                message: format!("vCenter has no {what}"),
            })
    }

    fn shape(method: &str, reason: &str) -> VcError {
        VcError::Protocol {
            method: method.to_string(),
            reason: reason.to_string(),
        }
    }

    /// ValidateCredentialsInGuest.
    pub async fn validate_credentials(&self) -> Result<(), VcError> {
        let m = &self.managers;
        self.call(ops::validate_credentials(
            self.mgr(&m.auth, "GuestAuthManager")?,
            &self.vm.moref,
            &self.auth,
        ))
        .await
        .map(drop)
    }

    /// CreateTemporaryDirectoryInGuest under the guest's temp dir; returns its path.
    pub async fn create_temp_dir(&self, prefix: &str) -> Result<String, VcError> {
        let m = &self.managers;
        let r = self
            .call(ops::create_temp_dir(
                self.mgr(&m.file, "GuestFileManager")?,
                &self.vm.moref,
                &self.auth,
                prefix,
            ))
            .await?;
        ops::parse_string(&r)
            .ok_or_else(|| Self::shape("CreateTemporaryDirectoryInGuest", "no path"))
    }

    /// MakeDirectoryInGuest.
    pub async fn make_dir(&self, path: &str) -> Result<(), VcError> {
        self.path_op(ops::make_dir, path).await
    }

    /// DeleteDirectoryInGuest, recursive.
    pub async fn delete_dir(&self, path: &str) -> Result<(), VcError> {
        self.path_op(ops::delete_dir, path).await
    }

    /// DeleteFileInGuest.
    pub async fn delete_file(&self, path: &str) -> Result<(), VcError> {
        self.path_op(ops::delete_file, path).await
    }

    /// A GuestFileManager call on one path whose reply carries nothing.
    async fn path_op(
        &self,
        build: fn(&MoRef, &MoRef, &GuestAuth, &str) -> Request,
        path: &str,
    ) -> Result<(), VcError> {
        let file_mgr = self.mgr(&self.managers.file, "GuestFileManager")?;
        self.call(build(file_mgr, &self.vm.moref, &self.auth, path))
            .await
            .map(drop)
    }

    /// ChangeFileAttributesInGuest: set a POSIX mode.
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), VcError> {
        let m = &self.managers;
        self.call(ops::chmod(
            self.mgr(&m.file, "GuestFileManager")?,
            &self.vm.moref,
            &self.auth,
            path,
            mode,
        ))
        .await
        .map(drop)
    }

    /// Upload bytes to `path` with `mode` (InitiateFileTransferToGuest + PUT), then
    /// set the mode explicitly with ChangeFileAttributesInGuest.
    pub async fn upload(&self, path: &str, data: bytes::Bytes, mode: u32) -> Result<(), VcError> {
        let m = &self.managers;
        let r = self
            .call(ops::upload(
                self.mgr(&m.file, "GuestFileManager")?,
                &self.vm.moref,
                &self.auth,
                path,
                mode,
                data.len() as u64,
            ))
            .await?;
        let raw = ops::parse_string(&r)
            .ok_or_else(|| Self::shape("InitiateFileTransferToGuest", "no URL"))?;
        let what = format!("upload {path}");
        let to = self.target(&raw, "InitiateFileTransferToGuest").await?;
        // The slot is given back before the chmod, which takes its own.
        let slot = self.session.permit().await;
        let resp = to
            .client
            .put(to.url.clone())
            .timeout(TRANSFER_TIMEOUT)
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(|e| self.send_err(&what, &to, e))?;
        drop(slot);
        if !resp.status().is_success() {
            return Err(self.transfer_err(&what, format!("HTTP {}", resp.status())));
        }
        self.chmod(path, mode).await
    }

    /// Download `path` (InitiateFileTransferFromGuest + GET), at most `limit` bytes.
    pub async fn download(&self, path: &str, limit: usize) -> Result<Vec<u8>, VcError> {
        let m = &self.managers;
        let r = self
            .call(ops::download(
                self.mgr(&m.file, "GuestFileManager")?,
                &self.vm.moref,
                &self.auth,
                path,
            ))
            .await?;
        let (raw, size) = ops::parse_transfer_from(&r)
            .ok_or_else(|| Self::shape("InitiateFileTransferFromGuest", "no URL"))?;
        let what = format!("download {path}");
        if size > limit as u64 {
            return Err(VcError::TooLarge { what, limit });
        }
        let from = self.target(&raw, "InitiateFileTransferFromGuest").await?;
        let _slot = self.session.permit().await;
        let resp = from
            .client
            .get(from.url.clone())
            .timeout(TRANSFER_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.send_err(&what, &from, e))?;
        if !resp.status().is_success() {
            return Err(self.transfer_err(&what, format!("HTTP {}", resp.status())));
        }
        read_bounded(resp, limit, &what).await.map_err(|e| match e {
            ReadError::TooLarge => VcError::TooLarge {
                what: what.clone(),
                limit,
            },
            ReadError::Http(e) => self.transfer_err(&what, super::error::chain(&e.without_url())),
        })
    }

    /// Where a transfer URL from `method` goes and whom it trusts (see [`transfer`]).
    async fn target(&self, raw: &str, method: &str) -> Result<Target, VcError> {
        transfer::target(&self.session, &self.vm.moref, raw, method).await
    }

    /// A failed PUT/GET: a thumbprint mismatch in its own words, else the transport's
    /// (without the URL: it carries the transfer ticket).
    fn send_err(&self, what: &str, target: &Target, e: reqwest::Error) -> VcError {
        let reason = target
            .mismatch
            .as_ref()
            .and_then(|m| m.take())
            .unwrap_or_else(|| super::error::chain(&e.without_url()));
        self.transfer_err(what, reason)
    }

    fn transfer_err(&self, what: &str, reason: String) -> VcError {
        VcError::Transfer {
            vm: self.vm.name.clone(),
            what: what.to_string(),
            reason,
        }
    }

    /// StartProgramInGuest; returns the pid.
    pub async fn start_program(&self, spec: &ProgramSpec) -> Result<i64, VcError> {
        let m = &self.managers;
        let r = self
            .call(ops::start_program(
                self.mgr(&m.process, "GuestProcessManager")?,
                &self.vm.moref,
                &self.auth,
                spec,
            ))
            .await?;
        ops::parse_pid(&r).ok_or_else(|| Self::shape("StartProgramInGuest", "no pid"))
    }

    /// ListProcessesInGuest for one pid; `None` if the guest does not know it.
    pub async fn process(&self, pid: i64) -> Result<Option<ProcessInfo>, VcError> {
        Ok(self
            .list_processes(&[pid])
            .await?
            .into_iter()
            .find(|p| p.pid == pid))
    }

    /// ListProcessesInGuest without pids: every process the guest lists.
    pub async fn processes(&self) -> Result<Vec<ProcessInfo>, VcError> {
        self.list_processes(&[]).await
    }

    async fn list_processes(&self, pids: &[i64]) -> Result<Vec<ProcessInfo>, VcError> {
        let m = &self.managers;
        let r = self
            .call(ops::list_processes(
                self.mgr(&m.process, "GuestProcessManager")?,
                &self.vm.moref,
                &self.auth,
                pids,
            ))
            .await?;
        Ok(ops::parse_processes(&r))
    }

    /// TerminateProcessInGuest.
    pub async fn terminate(&self, pid: i64) -> Result<(), VcError> {
        let m = &self.managers;
        self.call(ops::terminate(
            self.mgr(&m.process, "GuestProcessManager")?,
            &self.vm.moref,
            &self.auth,
            pid,
        ))
        .await
        .map(drop)
    }
}
