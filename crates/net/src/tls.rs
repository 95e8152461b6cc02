//! Identity: TLS certificates self-signed from a node's ed25519 network key,
//! and verifiers that pin the peer's key instead of trusting any CA.
//!
//! A client dialing member X accepts exactly one certificate public key: X's
//! network key from the committee. A server accepts any client certificate
//! whose handshake signature verifies, and reports the key to the RPC layer,
//! which decides whether that key is a committee member. Only ed25519 and
//! TLS 1.3 are offered, so there is nothing to negotiate down to.

use std::fmt;
use std::sync::Arc;

use floe_consensus::{KeyPair, PublicKey, Signature};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The ALPN protocol identifier of this wire version.
pub const ALPN: &[u8] = b"floe/1";

/// The server name every client puts in its ClientHello. Identity comes from
/// the pinned key, never from a name, so it is the same for every node.
pub const SERVER_NAME: &str = "floe.node";

/// Why a certificate was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(clippy::large_enum_variant)] // a cold path: built once per refused handshake
pub enum CertificateRejection {
    /// The certificate could not be parsed as X.509.
    #[error("the certificate is not valid X.509 DER: {0}")]
    Malformed(String),
    /// The certificate's key is not an ed25519 key.
    #[error("the certificate's key is not ed25519 (algorithm {0})")]
    NotEd25519(String),
    /// The ed25519 key is malformed or weak.
    #[error("the certificate's ed25519 key is invalid: {0}")]
    BadKey(String),
    /// The server is not the node the client dialed.
    #[error(
        "server presented network key {presented}, but the committee pins {expected} for this node"
    )]
    WrongKey {
        /// The key the committee lists for the node that was dialed.
        expected: PublicKey,
        /// The key in the certificate the server presented.
        presented: PublicKey,
    },
}

/// A node's TLS identity: its self-signed certificate and private key.
pub struct TlsIdentity {
    public: PublicKey,
    certificate: CertificateDer<'static>,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The fixed PKCS#8 v1 prefix of an ed25519 private key (RFC 8410): the key
/// is the 32-byte seed that follows it.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl TlsIdentity {
    /// Build the certificate for `key`, self-signed with that same key.
    pub fn new(key: &KeyPair) -> Result<Self, rcgen::Error> {
        let mut pkcs8 = Vec::with_capacity(48);
        pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
        pkcs8.extend_from_slice(&key.seed());
        let der = PrivatePkcs8KeyDer::from(pkcs8.as_slice());
        let signer = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)?;
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        let certificate = params.self_signed(&signer)?.der().clone();
        Ok(Self {
            public: key.public(),
            certificate,
            pkcs8,
        })
    }

    /// The network key this identity proves.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The DER certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}

/// The ed25519 key in an X.509 certificate.
pub fn certificate_key(certificate: &[u8]) -> Result<PublicKey, CertificateRejection> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|e| CertificateRejection::Malformed(e.to_string()))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(CertificateRejection::NotEd25519(
            spki.algorithm.algorithm.to_id_string(),
        ));
    }
    let raw: &[u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| CertificateRejection::BadKey("not 32 bytes".into()))?;
    PublicKey::from_bytes(raw).map_err(|e| CertificateRejection::BadKey(e.to_string()))
}

fn rejection(reason: CertificateRejection) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        reason,
    ))))
}

/// Verify a TLS 1.3 CertificateVerify signature: ed25519 over `message`,
/// by the key in `certificate`.
fn verify_handshake_signature(
    message: &[u8],
    certificate: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    let key = certificate_key(certificate).map_err(rejection)?;
    let signature: &[u8; 64] = dss
        .signature()
        .try_into()
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadSignature))?;
    if key.verify(message, &Signature::from_bytes(signature)) {
        Ok(HandshakeSignatureValid::assertion())
    } else {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ))
    }
}

/// The handshake-signature methods both verifiers share: TLS 1.3 only,
/// ed25519 only, checked with the key in the certificate.
macro_rules! ed25519_tls13_only {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls13RequiredForQuic,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_handshake_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

/// Client side: accept exactly the pinned key.
#[derive(Debug)]
struct PinnedServer {
    expected: PublicKey,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = certificate_key(end_entity).map_err(rejection)?;
        if presented != self.expected {
            return Err(rejection(CertificateRejection::WrongKey {
                expected: self.expected,
                presented,
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    ed25519_tls13_only!();
}

/// Server side: any ed25519 certificate whose handshake signature verifies.
/// Membership is decided per request from the key, not here, so plain clients
/// (no certificate) and non-members still reach the public requests.
#[derive(Debug)]
struct AnyEd25519Client;

impl ClientCertVerifier for AnyEd25519Client {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        certificate_key(end_entity).map_err(rejection)?;
        Ok(ClientCertVerified::assertion())
    }

    ed25519_tls13_only!();
}

/// ring's suites, AES-128-GCM first: both ends build their configuration
/// here, so every connection between Floe parties uses it. Sliver traffic is
/// bulk, and AES-128 runs 10 rounds per block to AES-256's 14; both are
/// TLS 1.3's standard suites (and QUIC's packet protection is the suite's AEAD).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// A rustls server configuration for `identity`, speaking `alpn`.
///
/// Used by the QUIC server and usable as-is over TCP (tokio-rustls).
pub fn server_config(
    identity: &TlsIdentity,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyEd25519Client))
        .with_single_cert(vec![identity.certificate.clone()], identity.private_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A rustls client configuration that accepts only a server proving
/// `expected`, presenting `identity` as its client certificate if given.
pub fn client_config(
    expected: PublicKey,
    identity: Option<&TlsIdentity>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { expected }));
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(vec![identity.certificate.clone()], identity.private_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The network key a peer proved in its handshake, if it presented one.
pub fn peer_key(connection: &quinn::Connection) -> Option<PublicKey> {
    let identity = connection.peer_identity()?;
    let certificates = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_key(certificates.first()?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn aes_128_gcm_is_offered_first_and_no_suite_is_lost() {
        let ours: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut theirs: Vec<_> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| u16::from(*s));
        theirs.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, theirs);
    }

    #[test]
    fn certificate_carries_the_network_key() {
        let key = KeyPair::from_seed(&[7; 32]);
        let identity = TlsIdentity::new(&key).unwrap();
        assert_eq!(
            certificate_key(identity.certificate()).unwrap(),
            key.public()
        );
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            certificate_key(b"not a certificate"),
            Err(CertificateRejection::Malformed(_))
        ));
    }
}
