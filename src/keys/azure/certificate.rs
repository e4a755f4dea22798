//! Service-principal certificate credentials (`AZURE_CLIENT_CERTIFICATE_PATH`), in pure Rust.
//!
//! Microsoft Entra ID's client-credentials grant with a certificate: the client proves it holds
//! the certificate's private key with a signed JWT, the *client assertion*
//! (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>). veil builds
//! and signs that JWT itself and hands it to the SDK's `ClientAssertionCredential`, which makes
//! the token request (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`).
//! The SDK's own `ClientCertificateCredential` needs OpenSSL; this needs only the `rsa` crate.
//!
//! The assertion is what the Azure SDKs (Go, whose `azidentity` sops uses, and Rust) send:
//!
//! * header `{"alg": "RS256", "typ": "JWT", "x5t": base64url(SHA-1(certificate DER))}`, plus
//!   `"x5c": [base64(DER), …]` (the certificate first, then the rest of the file's chain) when
//!   `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` is `true` or `1` (subject name / issuer
//!   authentication). Entra also accepts PS256 with `x5t#S256`; RS256 with `x5t` is the form
//!   every Entra endpoint (public and sovereign clouds, ADFS-era tenants) accepts.
//! * claims `aud` (the token endpoint URL), `iss` = `sub` = the client ID, `jti` (a random UUID),
//!   `nbf` = `iat` = now, `exp` = now + 10 minutes.
//!
//! The file is PEM: one or more `CERTIFICATE` blocks and one RSA private key, PKCS#8
//! (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`,
//! PBES2 with PBKDF2 or scrypt and AES-CBC, what `openssl pkcs8 -topk8` writes) opened with
//! `AZURE_CLIENT_CERTIFICATE_PASSWORD`. The certificate used is the one whose public key is the
//! private key's. PKCS#12 (`.pfx`) and OpenSSL's legacy `Proc-Type: 4,ENCRYPTED` PEM are refused
//! with the `openssl` command that converts them. Key material stays in zeroizing buffers (the
//! `rsa` key zeroizes itself on drop) and no message or `Debug` output holds it or an assertion.

use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::http::ClientMethodOptions;
use azure_identity::{ClientAssertion, ClientAssertionCredential};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use pkcs8::der::{asn1::AnyRef, Decode, Reader, SliceReader, Tag, TagNumber, Tagged};
use pkcs8::{DecodePrivateKey, EncryptedPrivateKeyInfo, PrivateKeyInfo, SubjectPublicKeyInfoRef};
use rand::RngCore;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// How long an assertion is valid (Entra: at most 10 minutes is recommended).
pub(crate) const ASSERTION_LIFETIME_SECS: i64 = 600;
/// The OID of `rsaEncryption`, the only key type RS256 can use.
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// A certificate and its private key, read from `AZURE_CLIENT_CERTIFICATE_PATH`.
pub(crate) struct ClientCertificate {
    /// Zeroized on drop by the `rsa` crate.
    key: RsaPrivateKey,
    /// DER certificates: the key's own first, then the others of the file in their order.
    chain: Vec<Vec<u8>>,
    /// SHA-1 of the key's certificate (`x5t`), what Entra ID shows as the thumbprint.
    thumbprint: [u8; 20],
    /// The file, for messages.
    path: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("path", &self.path)
            .field("thumbprint", &self.thumbprint_hex())
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads the PEM file at `path`; `password` opens an encrypted PKCS#8 key.
    pub(crate) fn load(path: &str, password: Option<&str>) -> Result<ClientCertificate, String> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            format!("cannot read the certificate file {path} (AZURE_CLIENT_CERTIFICATE_PATH): {e}")
        })?);
        ClientCertificate::from_bytes(path, &bytes, password)
    }

    /// Parses a certificate file's content; `path` names it in messages.
    pub(crate) fn from_bytes(
        path: &str,
        bytes: &[u8],
        password: Option<&str>,
    ) -> Result<ClientCertificate, String> {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN ") => text,
            _ => return Err(not_pem(path, bytes)),
        };
        let mut certificates: Vec<Vec<u8>> = Vec::new();
        let mut key: Option<RsaPrivateKey> = None;
        for block in pem_blocks(text) {
            if block.contains("Proc-Type:") {
                return Err(format!(
                    "the private key in {path} uses OpenSSL's legacy PEM encryption, which veil \
                     cannot open; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 \
                     aes-256-cbc -in KEY.pem` (or to a plain key with `openssl pkcs8 -topk8 \
                     -nocrypt`) and put it beside the certificate"
                ));
            }
            let (label, der) = pkcs8::der::pem::decode_vec(block.as_bytes())
                .map_err(|e| format!("{path} holds a PEM block veil cannot decode: {e}"))?;
            let der = Zeroizing::new(der);
            let parsed = match label {
                "CERTIFICATE" => {
                    certificates.push(der.to_vec());
                    continue;
                }
                "PRIVATE KEY" => pkcs8_key(path, &der)?,
                "RSA PRIVATE KEY" => RsaPrivateKey::from_pkcs1_der(&der).map_err(|e| {
                    format!("the RSA PRIVATE KEY in {path} is not a valid PKCS#1 key: {e}")
                })?,
                "ENCRYPTED PRIVATE KEY" => encrypted_key(path, &der, password)?,
                "EC PRIVATE KEY" => return Err(not_rsa(path)),
                _ => continue,
            };
            if key.replace(parsed).is_some() {
                return Err(format!(
                    "{path} holds more than one private key; keep only the certificate's"
                ));
            }
        }
        let Some(key) = key else {
            return Err(format!(
                "{path} holds no private key: AZURE_CLIENT_CERTIFICATE_PATH must name a PEM file \
                 with the certificate and its unencrypted (PRIVATE KEY, RSA PRIVATE KEY) or \
                 encrypted (ENCRYPTED PRIVATE KEY) private key"
            ));
        };
        if certificates.is_empty() {
            return Err(format!(
                "{path} holds a private key but no CERTIFICATE; put the certificate in the same \
                 file"
            ));
        }
        let public = key.to_public_key();
        let own = certificates
            .iter()
            .position(|der| certificate_public_key(der).as_ref() == Some(&public))
            .ok_or_else(|| {
                format!(
                    "none of the {} certificate(s) in {path} belongs to its private key",
                    certificates.len()
                )
            })?;
        let leaf = certificates.remove(own);
        certificates.insert(0, leaf);
        let thumbprint: [u8; 20] = Sha1::digest(&certificates[0]).into();
        Ok(ClientCertificate {
            key,
            chain: certificates,
            thumbprint,
            path: path.to_string(),
        })
    }

    /// The thumbprint as Entra ID's portal shows it (upper-case hex SHA-1).
    pub(crate) fn thumbprint_hex(&self) -> String {
        self.thumbprint.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// A signed client assertion for `client_id` at the token endpoint `audience`, issued at
    /// `now` (Unix seconds).
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
        send_chain: bool,
    ) -> Result<String, String> {
        let mut header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": URL_SAFE_NO_PAD.encode(self.thumbprint),
        });
        if send_chain {
            header["x5c"] = self
                .chain
                .iter()
                .map(|der| serde_json::Value::from(STANDARD.encode(der)))
                .collect();
        }
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now + ASSERTION_LIFETIME_SECS,
            "iat": now,
            "iss": client_id,
            "jti": uuid_v4(),
            "nbf": now,
            "sub": client_id,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let digest = Sha256::digest(signing_input.as_bytes());
        // With the RNG: blinded, so the signing time says nothing about the key.
        let signature = self
            .key
            .sign_with_rng(
                &mut rand::thread_rng(),
                Pkcs1v15Sign::new::<Sha256>(),
                &digest,
            )
            .map_err(|e| {
                format!(
                    "cannot sign the client assertion with the key in {}: {e}",
                    self.path
                )
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The `-----BEGIN …-----` … `-----END …-----` blocks of a PEM file, explanatory text skipped.
fn pem_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end) = from.find("-----END ") else {
            break;
        };
        // The END line runs to its closing dashes.
        let after_end = &from[end + "-----END ".len()..];
        let close = after_end
            .find("-----")
            .map(|i| end + "-----END ".len() + i + "-----".len())
            .unwrap_or(from.len());
        blocks.push(&from[..close]);
        rest = &from[close..];
    }
    blocks
}

fn not_pem(path: &str, bytes: &[u8]) -> String {
    let lower = path.to_ascii_lowercase();
    if bytes.first() == Some(&0x30) || lower.ends_with(".pfx") || lower.ends_with(".p12") {
        format!(
            "{path} is not PEM; if it is PKCS#12 (.pfx/.p12), which veil cannot read, convert it \
             with `openssl pkcs12 -in {path} -out CERT.pem -nodes` (add `-legacy` for old files) \
             and set AZURE_CLIENT_CERTIFICATE_PATH to CERT.pem"
        )
    } else {
        format!(
            "{path} is not a PEM file; AZURE_CLIENT_CERTIFICATE_PATH must name a PEM file with \
             the certificate and its private key"
        )
    }
}

fn not_rsa(path: &str) -> String {
    format!(
        "the private key in {path} is not an RSA key; Entra ID client assertions are signed with \
         RS256, so the certificate needs an RSA key"
    )
}

/// An unencrypted PKCS#8 key, which must be RSA.
fn pkcs8_key(path: &str, der: &[u8]) -> Result<RsaPrivateKey, String> {
    let info = PrivateKeyInfo::try_from(der)
        .map_err(|e| format!("the PRIVATE KEY in {path} is not a valid PKCS#8 key: {e}"))?;
    if info.algorithm.oid.to_string() != RSA_ENCRYPTION {
        return Err(not_rsa(path));
    }
    RsaPrivateKey::try_from(info)
        .map_err(|e| format!("the PRIVATE KEY in {path} is not a valid RSA key: {e}"))
}

/// An `ENCRYPTED PRIVATE KEY`, opened with `AZURE_CLIENT_CERTIFICATE_PASSWORD`.
fn encrypted_key(path: &str, der: &[u8], password: Option<&str>) -> Result<RsaPrivateKey, String> {
    let Some(password) = password else {
        return Err(format!(
            "the private key in {path} is encrypted; set AZURE_CLIENT_CERTIFICATE_PASSWORD to \
             its password"
        ));
    };
    let info = EncryptedPrivateKeyInfo::try_from(der).map_err(|e| {
        format!("the ENCRYPTED PRIVATE KEY in {path} is not valid encrypted PKCS#8: {e}")
    })?;
    // A wrong password mostly fails the padding check, else yields bytes that are no key.
    let document = info.decrypt(password).map_err(|_| {
        format!(
            "cannot decrypt the private key in {path}: wrong AZURE_CLIENT_CERTIFICATE_PASSWORD, \
             or an encryption scheme other than PBES2 (PBKDF2 or scrypt, AES-CBC)"
        )
    })?;
    let info = PrivateKeyInfo::try_from(document.as_bytes()).map_err(|_| {
        format!("cannot decrypt the private key in {path}: wrong AZURE_CLIENT_CERTIFICATE_PASSWORD")
    })?;
    if info.algorithm.oid.to_string() != RSA_ENCRYPTION {
        return Err(not_rsa(path));
    }
    RsaPrivateKey::from_pkcs8_der(document.as_bytes())
        .map_err(|e| format!("the private key in {path} is not a valid RSA key: {e}"))
}

/// The RSA public key of a DER certificate; `None` for another key type or bad DER.
///
/// `Certificate ::= SEQUENCE { tbsCertificate, … }`, `TBSCertificate ::= SEQUENCE { [0] version
/// OPTIONAL, serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, … }`.
pub(crate) fn certificate_public_key(der: &[u8]) -> Option<RsaPublicKey> {
    let certificate = AnyRef::from_der(der).ok()?;
    let mut outer = SliceReader::new(certificate.value()).ok()?;
    let tbs = AnyRef::decode(&mut outer).ok()?;
    if tbs.tag() != Tag::Sequence {
        return None;
    }
    let mut fields = SliceReader::new(tbs.value()).ok()?;
    let version = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    if fields.peek_tag().ok()? == version {
        AnyRef::decode(&mut fields).ok()?;
    }
    for _ in 0..5 {
        AnyRef::decode(&mut fields).ok()?;
    }
    let spki = SubjectPublicKeyInfoRef::decode(&mut fields).ok()?;
    RsaPublicKey::try_from(spki).ok()
}

/// A random (version 4) UUID, for `jti`.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Supplies fresh assertions to the SDK's `ClientAssertionCredential`.
pub(crate) struct CertificateAssertion {
    pub(crate) certificate: Arc<ClientCertificate>,
    pub(crate) client_id: String,
    /// The token endpoint, `{authority}/{tenant}/oauth2/v2.0/token`.
    pub(crate) audience: String,
    pub(crate) send_chain: bool,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("certificate", &self.certificate)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        self.certificate
            .assertion(
                &self.client_id,
                &self.audience,
                chrono::Utc::now().timestamp(),
                self.send_chain,
            )
            .map_err(|e| azure_core::Error::with_message(ErrorKind::Credential, e))
    }
}

/// The SDK's assertion credential, its failures said in terms of the certificate.
pub(crate) struct CertificateCredential {
    pub(crate) inner: Arc<ClientAssertionCredential<CertificateAssertion>>,
    /// `client certificate PATH (thumbprint …)`.
    pub(crate) what: String,
}

impl std::fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for CertificateCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.inner.get_token(scopes, options).await.map_err(|err| {
            let text = super::chain(&err);
            let text = text
                .replacen("ClientAssertionCredential authentication failed.", "", 1)
                .trim()
                .to_string();
            azure_core::Error::with_message(
                ErrorKind::Credential,
                format!("{} was not accepted: {text}", self.what),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use std::sync::OnceLock;

    /// One RSA-2048 key for the module's tests (slow to make in a debug build).
    fn rsa_key() -> RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap())
            .clone()
    }

    /// A self-signed certificate for `key`, PEM.
    fn certificate_for(key: &RsaPrivateKey, name: &str) -> String {
        let der = key.to_pkcs8_der().unwrap();
        let pair = rcgen::KeyPair::try_from(der.as_bytes()).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&pair).unwrap().pem()
    }

    fn other_certificate() -> String {
        let pair = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.self_signed(&pair).unwrap().pem()
    }

    fn pkcs8_pem(key: &RsaPrivateKey) -> String {
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .unwrap()
            .1
    }

    fn decode_json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn the_assertion_has_entras_header_and_claims_and_verifies() {
        let key = rsa_key();
        let cert = certificate_for(&key, "veil test");
        let file = format!("{cert}{}", pkcs8_pem(&key));
        let loaded = ClientCertificate::from_bytes("c.pem", file.as_bytes(), None).unwrap();
        let audience = "https://login.example/tenant/oauth2/v2.0/token";
        let jwt = loaded
            .assertion("client-1", audience, 1_700_000_000, false)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);

        let header = decode_json(parts[0]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        let thumbprint = Sha1::digest(der_of(&cert));
        assert_eq!(header["x5t"], URL_SAFE_NO_PAD.encode(thumbprint));
        assert!(header.get("x5c").is_none());
        assert_eq!(
            loaded.thumbprint_hex(),
            thumbprint
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        );

        let claims = decode_json(parts[1]);
        assert_eq!(claims["aud"], audience);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_000 + 600);
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(jti.len(), 36, "{jti}");

        // RS256: RSASSA-PKCS1-v1_5 with SHA-256 over `header.claims`, checked with the public key
        // the certificate carries.
        let public = certificate_public_key(&der_of(&cert)).unwrap();
        assert_eq!(public, key.to_public_key());
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let digest = Sha256::digest(format!("{}.{}", parts[0], parts[1]).as_bytes());
        public
            .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
            .expect("signature verifies");
        let tampered = Sha256::digest(format!("{}.{}x", parts[0], parts[1]).as_bytes());
        assert!(public
            .verify(Pkcs1v15Sign::new::<Sha256>(), &tampered, &signature)
            .is_err());

        // Every assertion has its own jti.
        let again = loaded.assertion("client-1", audience, 1_700_000_000, false);
        let again = decode_json(again.unwrap().split('.').nth(1).unwrap());
        assert_ne!(again["jti"], claims["jti"]);
    }

    #[test]
    fn the_chain_is_sent_own_certificate_first_and_pkcs1_keys_load() {
        let key = rsa_key();
        let ca = other_certificate();
        let cert = certificate_for(&key, "leaf");
        let pkcs1 = key.to_pkcs1_pem(LineEnding::CRLF).unwrap();
        // The CA first in the file, text around the blocks, CRLF key lines.
        let file = format!(
            "Bag Attributes: x\n{ca}\nsubject=leaf\n{cert}{}",
            pkcs1.as_str()
        );
        let loaded = ClientCertificate::from_bytes("c.pem", file.as_bytes(), None).unwrap();
        let jwt = loaded.assertion("c", "https://a/t", 0, true).unwrap();
        let header = decode_json(jwt.split('.').next().unwrap());
        let x5c: Vec<&str> = header["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            x5c,
            [STANDARD.encode(der_of(&cert)), STANDARD.encode(der_of(&ca))]
        );
        assert_eq!(
            header["x5t"],
            URL_SAFE_NO_PAD.encode(Sha1::digest(der_of(&cert)))
        );
    }

    #[test]
    fn encrypted_pkcs8_keys_open_with_the_password() {
        let key = rsa_key();
        let cert = certificate_for(&key, "enc");
        let der = key.to_pkcs8_der().unwrap();
        let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
            2048,
            b"saltsaltsaltsalt",
            &[7u8; 16],
        )
        .unwrap();
        let encrypted = PrivateKeyInfo::try_from(der.as_bytes())
            .unwrap()
            .encrypt_with_params(params, "pa55 word")
            .unwrap();
        let pem = encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .unwrap();
        let file = format!("{cert}{}", pem.as_str());
        let loaded =
            ClientCertificate::from_bytes("e.pem", file.as_bytes(), Some("pa55 word")).unwrap();
        assert_eq!(loaded.key.to_public_key(), key.to_public_key());

        let err = ClientCertificate::from_bytes("e.pem", file.as_bytes(), None).unwrap_err();
        assert!(
            err.contains("encrypted") && err.contains("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            "{err}"
        );
        let err =
            ClientCertificate::from_bytes("e.pem", file.as_bytes(), Some("not-it-9")).unwrap_err();
        assert!(
            err.contains("e.pem") && err.contains("wrong AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            "{err}"
        );
        assert!(!err.contains("not-it-9"), "{err}");
    }

    #[test]
    fn unusable_files_are_refused_by_name_without_key_material() {
        let key = rsa_key();
        let cert = certificate_for(&key, "x");
        let key_pem = pkcs8_pem(&key);
        let body = key_pem.lines().nth(1).unwrap().to_string();
        let check = |bytes: &[u8], path: &str, wanted: &str| {
            let err = ClientCertificate::from_bytes(path, bytes, None).unwrap_err();
            assert!(err.contains(path), "{err}");
            assert!(err.contains(wanted), "{wanted}: {err}");
            assert!(!err.contains(&body), "{err}");
        };
        check(cert.as_bytes(), "only-cert.pem", "no private key");
        check(key_pem.as_bytes(), "only-key.pem", "no CERTIFICATE");
        check(
            format!("{}{key_pem}", other_certificate()).as_bytes(),
            "mismatch.pem",
            "belongs to its private key",
        );
        check(&[0x30, 0x82, 0x01, 0x00], "id.pfx", "openssl pkcs12");
        check(b"hello", "junk.txt", "not a PEM file");
        check(
            format!("{cert}{key_pem}{key_pem}").as_bytes(),
            "two.pem",
            "more than one private key",
        );
        // An ECDSA key (rcgen's default) in PKCS#8: RS256 needs RSA.
        let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
        check(format!("{cert}{ec}").as_bytes(), "ec.pem", "not an RSA key");
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: \
                      AES-256-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        check(
            format!("{cert}{legacy}").as_bytes(),
            "legacy.pem",
            "openssl pkcs8 -topk8",
        );
        let err = ClientCertificate::load("/nonexistent/dir/cert.pem", None).unwrap_err();
        assert!(
            err.contains("/nonexistent/dir/cert.pem") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn debug_shows_the_file_and_thumbprint_only() {
        let key = rsa_key();
        let file = format!("{}{}", certificate_for(&key, "d"), pkcs8_pem(&key));
        let loaded = ClientCertificate::from_bytes("d.pem", file.as_bytes(), None).unwrap();
        let text = format!("{loaded:?}");
        assert!(text.contains("d.pem") && text.contains(&loaded.thumbprint_hex()));
        assert!(!text.contains("key"), "{text}");
        let assertion = CertificateAssertion {
            certificate: Arc::new(loaded),
            client_id: "c".into(),
            audience: "https://a/t".into(),
            send_chain: false,
        };
        assert!(!format!("{assertion:?}").contains("PRIVATE"));
    }
}
