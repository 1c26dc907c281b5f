"""pyvmomi (VMware's own SDK) drives the reset-peer vCenter simulator (vcsim).

This holds the simulator honest: if VMware's SDK can log in, find a VM, and run
every guest operation the controller uses against it, its SOAP shapes are real.

Run:  python3 -m unittest tests/py/test_pyvmomi.py   (or: python3 -m pytest tests/py)
Needs: pip package `pyvmomi`; the vcsim binary (VCSIM_BIN, else target/debug/vcsim;
build it with `cargo build -p reset-vcsim`). No root and no network namespace
needed: the VMs here run programs on this host.
"""

import hashlib
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST_USER, GUEST_PASSWORD = "root", "guest-secret-1"
VC_USER, VC_PASSWORD = "administrator@vsphere.local", "vc-secret-1"


def vcsim_bin():
    explicit = os.environ.get("VCSIM_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.path.join(target, "debug", "vcsim")
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not found: run `cargo build -p reset-vcsim` or set VCSIM_BIN")
    return path


def start_vcsim(tmp, *extra):
    """A vcsim with one more VM; returns (process, host, port, stdout lines after the URL)."""
    proc = subprocess.Popen(
        [vcsim_bin(), "--vm", "web-01", "--vm", "db-01", "--guest-user", f"{GUEST_USER}:{GUEST_PASSWORD}",
         "--vc-user", f"{VC_USER}:{VC_PASSWORD}", "--tmp-dir", tmp, *extra],
        stdout=subprocess.PIPE, text=True)
    url = urllib.parse.urlparse(proc.stdout.readline().strip())
    return proc, url.hostname, url.port


def stop_vcsim(proc):
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class PyvmomiDrivesVcsim(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="vcsim-py-")
        cls.proc = subprocess.Popen(
            [vcsim_bin(), "--vm", "web-01", "--vm", "off-01", "--vm", "notools-01",
             "--powered-off", "off-01", "--tools-not-running", "notools-01",
             "--guest-user", f"{GUEST_USER}:{GUEST_PASSWORD}",
             "--vc-user", f"{VC_USER}:{VC_PASSWORD}", "--tmp-dir", cls.tmp],
            stdout=subprocess.PIPE, text=True)
        cls.url = cls.proc.stdout.readline().strip()  # the first line is the URL (contract)
        u = urllib.parse.urlparse(cls.url)
        cls.host, cls.port = u.hostname, u.port
        cls.si = SmartConnect(host=cls.host, port=cls.port, user=VC_USER, pwd=VC_PASSWORD,
                              disableSslCertValidation=True)
        cls.content = cls.si.RetrieveContent()
        cls.creds = vim.vm.guest.NamePasswordAuthentication(username=GUEST_USER, password=GUEST_PASSWORD)

    @classmethod
    def tearDownClass(cls):
        try:
            Disconnect(cls.si)
        finally:
            cls.proc.terminate()
            cls.proc.wait(10)
            cls.proc.stdout.close()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def find_vm(self, name):
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [vim.VirtualMachine], True)
        try:
            hits = [vm for vm in view.view if vm.name == name]
        finally:
            view.DestroyView()
        self.assertEqual(len(hits), 1, f"exactly one VM named {name}")
        return hits[0]

    def transfer(self, url, method, data=None):
        # The host in a /guestFile URL may be `*`: use the host we called.
        u = urllib.parse.urlparse(url)
        if u.hostname == "*":
            url = u._replace(netloc=f"{self.host}:{self.port}").geturl()
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, context=insecure(), timeout=10) as resp:
            return resp.status, resp.read()

    def wait_end(self, pm, vm, pid, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            [info] = pm.ListProcessesInGuest(vm, self.creds, [pid])
            if info.endTime is not None:
                return info
            time.sleep(0.1)
        self.fail(f"process {pid} did not end in {timeout} s")

    def test_01_lookup_and_state(self):
        self.assertIn("vcsim", self.content.about.fullName)
        vm = self.find_vm("web-01")
        self.assertEqual(vm.runtime.powerState, "poweredOn")
        self.assertEqual(vm.guest.toolsRunningStatus, "guestToolsRunning")
        self.assertEqual(self.find_vm("off-01").runtime.powerState, "poweredOff")

    def test_02_validate_credentials(self):
        vm = self.find_vm("web-01")
        am = self.content.guestOperationsManager.authManager
        am.ValidateCredentialsInGuest(vm, self.creds)
        bad = vim.vm.guest.NamePasswordAuthentication(username=GUEST_USER, password="wrong")
        with self.assertRaises(vim.fault.InvalidGuestLogin):
            am.ValidateCredentialsInGuest(vm, bad)
        with self.assertRaises(vim.fault.InvalidPowerState) as cm:
            am.ValidateCredentialsInGuest(self.find_vm("off-01"), self.creds)
        self.assertEqual(cm.exception.existingState, "poweredOff")
        with self.assertRaises(vim.fault.GuestOperationsUnavailable):
            am.ValidateCredentialsInGuest(self.find_vm("notools-01"), self.creds)

    def test_03_files_up_down_delete(self):
        vm = self.find_vm("web-01")
        fm = self.content.guestOperationsManager.fileManager
        d = fm.CreateTemporaryDirectoryInGuest(vm, self.creds, "py-", "")
        self.assertTrue(d.startswith(self.tmp))
        self.assertEqual(os.stat(d).st_mode & 0o777, 0o700)
        path = d + "/blob.bin"
        data = bytes(range(256)) * 40
        attrs = vim.vm.guest.FileManager.PosixFileAttributes(permissions=0o640)
        url = fm.InitiateFileTransferToGuest(vm, self.creds, path, attrs, len(data), True)
        status, _ = self.transfer(url, "PUT", data)
        self.assertEqual(status, 200)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o640)
        fm.ChangeFileAttributesInGuest(vm, self.creds, path,
                                       vim.vm.guest.FileManager.PosixFileAttributes(permissions=0o600))
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        info = fm.InitiateFileTransferFromGuest(vm, self.creds, path)
        self.assertEqual(info.size, len(data))
        self.assertEqual(info.attributes.permissions, 0o600)
        status, body = self.transfer(info.url, "GET")
        self.assertEqual((status, body), (200, data))
        fm.DeleteFileInGuest(vm, self.creds, path)
        self.assertFalse(os.path.exists(path))
        with self.assertRaises(vim.fault.FileNotFound):
            fm.DeleteFileInGuest(vm, self.creds, path)
        with self.assertRaises(vim.fault.FileNotFound):
            fm.InitiateFileTransferFromGuest(vm, self.creds, path)
        fm.MakeDirectoryInGuest(vm, self.creds, d + "/sub", False)
        fm.DeleteDirectoryInGuest(vm, self.creds, d, True)
        self.assertFalse(os.path.exists(d))

    def test_04_processes(self):
        vm = self.find_vm("web-01")
        pm = self.content.guestOperationsManager.processManager
        out = os.path.join(self.tmp, "proc.out")
        spec = vim.vm.guest.ProcessManager.ProgramSpec(
            programPath="/bin/sh", arguments=f"-c 'echo \"$GREETING\" > {out}; exit 7'",
            envVariables=["GREETING=hello from the guest", "PATH=/usr/bin:/bin"])
        pid = pm.StartProgramInGuest(vm, self.creds, spec)
        self.assertGreater(pid, 0)
        info = self.wait_end(pm, vm, pid)
        self.assertEqual(info.exitCode, 7)
        self.assertEqual(info.owner, GUEST_USER)
        with open(out) as f:
            self.assertEqual(f.read().strip(), "hello from the guest")

        sleeper = pm.StartProgramInGuest(vm, self.creds, vim.vm.guest.ProcessManager.ProgramSpec(
            programPath="/bin/sleep", arguments="60"))
        [running] = pm.ListProcessesInGuest(vm, self.creds, [sleeper])
        self.assertIsNone(running.endTime)
        pm.TerminateProcessInGuest(vm, self.creds, sleeper)
        ended = self.wait_end(pm, vm, sleeper)
        self.assertIsNotNone(ended.exitCode)
        with self.assertRaises(vim.fault.GuestProcessNotFound):
            pm.TerminateProcessInGuest(vm, self.creds, sleeper)

    def test_05_logout_ends_the_session(self):
        si = SmartConnect(host=self.host, port=self.port, user=VC_USER, pwd=VC_PASSWORD,
                          disableSslCertValidation=True)
        content = si.RetrieveContent()
        content.sessionManager.Logout()
        with self.assertRaises(vim.fault.NotAuthenticated):
            content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)

    def test_06_wrong_vcenter_password(self):
        with self.assertRaises(vim.fault.InvalidLogin):
            SmartConnect(host=self.host, port=self.port, user=VC_USER, pwd="nope",
                         disableSslCertValidation=True)

    def test_07_negotiates_8_0_2_0_like_against_vcenter_8_0_3(self):
        # pyvmomi read vcsim's vimServiceVersions.xml (vCenter 8.0.3's, with its internal id)
        # and chose what it chose against the real one (its cassette smart_connection.yaml).
        self.assertEqual(self.si._stub.version, "vim.version.v8_0_2_0")
        self.assertEqual(self.content.about.apiType, "VirtualCenter")
        self.assertEqual(self.content.about.version, "8.0.3")

    def test_08_esx_host_mode_leads_to_the_host(self):
        tmp = tempfile.mkdtemp(prefix="vcsim-py-esx-")
        proc, host, port = start_vcsim(tmp, "--esx-host", "--page-size", "1")
        try:
            esx_line = proc.stdout.readline().split()  # esx-host https://IP:PORT/ as NAME
            esx = urllib.parse.urlparse(esx_line[1])
            si = SmartConnect(host=host, port=port, user=VC_USER, pwd=VC_PASSWORD, disableSslCertValidation=True)
            content = si.RetrieveContent()
            # Two VMs, one object per page: pyvmomi follows ContinueRetrievePropertiesEx.
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            pc = content.propertyCollector
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
                    obj=view, skip=True, selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                        type=vim.view.ContainerView, path="view", skip=False)])],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
            page = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
            names = [o.propSet[0].val for o in page.objects]
            self.assertIsNotNone(page.token)
            page = pc.ContinueRetrievePropertiesEx(page.token)
            names += [o.propSet[0].val for o in page.objects]
            self.assertEqual(sorted(names), ["db-01", "web-01"])
            self.assertIsNone(page.token)
            vm = [v for v in view.view if v.name == "web-01"][0]
            view.DestroyView()
            h = vm.runtime.host
            self.assertEqual(h.name, "esx-01.vcsim.invalid")
            [mgmt] = [c for c in h.config.virtualNicManagerInfo.netConfig if c.nicType == "management"]
            ips = [v.spec.ip.ipAddress for v in mgmt.candidateVnic if v.key in mgmt.selectedVnic]
            self.assertEqual(ips, [esx.hostname])
            der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((esx.hostname, esx.port)))
            sha1 = ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest())
            self.assertEqual(h.summary.config.sslThumbprint, sha1)
            fm = content.guestOperationsManager.fileManager
            url = fm.InitiateFileTransferToGuest(
                vm, self.creds, tmp + "/x", vim.vm.guest.FileManager.PosixFileAttributes(), 1, True)
            self.assertEqual(urllib.parse.urlparse(url).netloc, f"esx-01.vcsim.invalid:{esx.port}")
            Disconnect(si)
        finally:
            stop_vcsim(proc)
            shutil.rmtree(tmp, ignore_errors=True)

    def test_09_products_and_version_documents(self):
        for extra, version, api_type in [
                (("--product", "vcenter-6.7"), "vim.version.version12", "VirtualCenter"),
                (("--product", "esxi-8.0.3", "--esxi-license", "esxBasic"), "vim.version.v8_0_2_0", "HostAgent")]:
            tmp = tempfile.mkdtemp(prefix="vcsim-py-prod-")
            proc, host, port = start_vcsim(tmp, *extra)
            try:
                si = SmartConnect(host=host, port=port, user=VC_USER, pwd=VC_PASSWORD,
                                  disableSslCertValidation=True)
                self.assertEqual(si._stub.version, version, extra)
                content = si.RetrieveContent()
                self.assertEqual(content.about.apiType, api_type)
                if api_type == "HostAgent":
                    [lic] = content.licenseManager.licenses
                    self.assertEqual(lic.editionKey, "esxBasic")
                Disconnect(si)
            finally:
                stop_vcsim(proc)
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
