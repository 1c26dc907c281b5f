//! Trust an ESXi host by the certificate thumbprint vCenter records for it
//! (`HostSystem.summary.config.sslThumbprint`), as govmomi's `soap.Client.SetThumbprint` does
//! for guest file transfers: ESXi hosts carry self-signed or VMCA-issued certificates that the
//! system roots do not know. The pin is the whole check: the certificate whose fingerprint
//! equals the recorded one is the host's (its name is not checked: the host is reached by
//! its management IP); any other is refused, with both fingerprints in the message.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};

/// A certificate fingerprint: SHA-1 (20 bytes, what vCenter records) or SHA-256 (32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbprint(Vec<u8>);

impl Thumbprint {
    /// Read `19:32:16:...:F5` (colons optional, any case); `None` unless it is 20 or 32 bytes.
    pub fn parse(s: &str) -> Option<Self> {
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
        if !hex.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = hex
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
        bytes
            .filter(|b| b.len() == 20 || b.len() == 32)
            .map(Thumbprint)
    }

    /// The fingerprint of a DER certificate with the same algorithm as `self`.
    pub fn of_same_kind(&self, der: &[u8]) -> Thumbprint {
        let alg = if self.0.len() == 32 {
            &ring::digest::SHA256
        } else {
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY
        };
        Thumbprint(ring::digest::digest(alg, der).as_ref().to_vec())
    }

    /// `SHA-1` or `SHA-256`.
    pub fn algorithm(&self) -> &'static str {
        if self.0.len() == 32 {
            "SHA-256"
        } else {
            "SHA-1"
        }
    }
}

impl fmt::Display for Thumbprint {
    /// Upper-case hex pairs joined by colons, as vCenter writes them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// The last thumbprint mismatch a pinned client saw, worded for the user.
#[derive(Debug, Clone, Default)]
pub struct Mismatch(Arc<Mutex<Option<String>>>);

impl Mismatch {
    fn record(&self, msg: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(msg);
    }

    /// The recorded mismatch, if any (cleared).
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[derive(Debug)]
struct ThumbprintMismatch(String);

impl fmt::Display for ThumbprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ThumbprintMismatch {}

#[derive(Debug)]
struct PinnedVerifier {
    pin: Thumbprint,
    /// The host as messages name it: `esx-01.lab (HostSystem host-12)`.
    host: String,
    provider: Arc<CryptoProvider>,
    mismatch: Mismatch,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = self.pin.of_same_kind(end_entity.as_ref());
        if got == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        let msg = format!(
            "ESXi host {} presented a certificate with {} thumbprint {got}, but vCenter records {} for it (summary.config.sslThumbprint): the host's certificate changed since vCenter last saw it, or something else answers at that address; reconnect the host in vCenter to refresh its thumbprint, and check the network path",
            self.host,
            self.pin.algorithm(),
            self.pin
        );
        self.mismatch.record(msg.clone());
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(ThumbprintMismatch(msg))),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTP client that trusts exactly the certificate with thumbprint `pin` (and nothing
/// else); the [`Mismatch`] says what it saw when it refused one.
pub fn pinned_client(
    pin: Thumbprint,
    host: &str,
    connect_timeout: Duration,
) -> Result<(reqwest::Client, Mismatch), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mismatch = Mismatch::default();
    let verifier = PinnedVerifier {
        pin,
        host: host.to_string(),
        provider: provider.clone(),
        mismatch: mismatch.clone(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("reset-controller/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| super::error::chain(&e))?;
    Ok((client, mismatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_read_and_print_as_vcenter_writes_them() {
        // As recorded by pyvmomi (tests/fixtures/test_json_host_explode.yaml).
        let t = Thumbprint::parse("19:32:16:04:8B:77:FB:91:5E:D2:A6:87:6D:A5:5A:08:0F:C9:BA:F5")
            .unwrap();
        assert_eq!(t.algorithm(), "SHA-1");
        assert_eq!(
            t.to_string(),
            "19:32:16:04:8B:77:FB:91:5E:D2:A6:87:6D:A5:5A:08:0F:C9:BA:F5"
        );
        assert_eq!(
            Thumbprint::parse("193216048b77fb915ed2a6876da55a080fc9baf5"),
            Some(t)
        );
        assert_eq!(
            Thumbprint::parse(&"ab".repeat(32)).unwrap().algorithm(),
            "SHA-256"
        );
        for bad in [
            "",
            "19:32",
            "zz:32:16:04:8B:77:FB:91:5E:D2:A6:87:6D:A5:5A:08:0F:C9:BA:F5",
            "1",
        ] {
            assert_eq!(Thumbprint::parse(bad), None, "{bad}");
        }
        // SHA-1 of the empty string, a known value.
        let sha1 = Thumbprint::parse(&"00".repeat(20))
            .unwrap()
            .of_same_kind(b"");
        assert_eq!(
            sha1.to_string(),
            "DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09"
        );
    }
}
