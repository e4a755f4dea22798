//! PKCS#11 hardware security modules (SoftHSM2, YubiHSM 2, AWS CloudHSM, Thales Luna, …), behind
//! the `pkcs11` cargo feature. sops has no such key type; the metadata list `pkcs11` is veil's own
//! (sops ignores it, so a file that also has age or PGP keys stays readable by sops).
//!
//! **Naming a key.** An RFC 7512 URI, e.g.
//! `pkcs11:token=sops-test;object=sops-aes;type=secret-key?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin`.
//! Path attributes select the token (`token`, `manufacturer`, `serial`, `model`, `slot-id`,
//! `slot-description`, `slot-manufacturer`, `library-manufacturer`, `library-description`,
//! `library-version`) and the key (`object` = label, `id` = percent-encoded bytes, `type`);
//! values are percent-decoded. The object must match exactly one key. Unknown attributes are
//! refused, so a URI veil does not fully understand never selects a key by accident.
//!
//! **Module.** `module-path` from the URI, else `VEIL_PKCS11_MODULE`. Loading a module runs its
//! code, and URIs come from files (`.sops.yaml`, the metadata of a file being opened) that
//! someone else may have written; so a URI's `module-path` is only loaded when it lies under a
//! system library directory (`/usr/lib`, `/usr/lib64`, `/usr/local/lib`, `/lib`, `/lib64`,
//! `/opt`) or is the module `VEIL_PKCS11_MODULE` names; otherwise `VEIL_PKCS11_MODULE` is used
//! instead, or the key fails with a message saying so. `module-name` is not supported.
//!
//! **PIN.** In this order: `pin-value` in the URI (refused unless `VEIL_PKCS11_ALLOW_PIN_VALUE=1`:
//! URIs end up in shell history, process lists and config files), `pin-source` in the URI
//! (`file:/path` or an absolute path; the file's first line), `VEIL_PKCS11_PIN`, the first line of
//! the file `VEIL_PKCS11_PIN_FILE`. No PIN and a token that needs a login is an error. The PIN is
//! kept in `Zeroizing` memory, handed only to `C_Login`, and never written into a message, and the
//! URI stored in the metadata (and used in messages) has any `pin-value` removed.
//!
//! **Mechanism.** AES-256-GCM (`CKM_AES_GCM`) with a token-resident AES key is the default: every
//! PKCS#11 HSM in common use implements it (SoftHSM2, YubiHSM 2, CloudHSM, Luna), the key never
//! leaves the token, and the tag authenticates the wrapped part. Each wrap uses a fresh random
//! 12-byte IV and the fixed AAD `veil-pkcs11-v1`; HSMs that insist on generating the IV
//! themselves (CloudHSM, Luna in FIPS mode) write theirs back into the parameter block, and the IV
//! read back after the call is what is stored. RSA-OAEP is the second option, for RSA key pairs:
//! wrapping needs only the public key (`type=public`, or an RSA key found by label/id), unwrapping
//! uses the private key with the same label/id. OAEP with SHA-256 (MGF1-SHA-256) is tried first,
//! SHA-1 when the token refuses it (SoftHSM 2.6 supports only SHA-1). Keys without `type` are
//! looked up as an AES secret key first, then as an RSA public key.
//!
//! **Envelope.** `enc` is the standard base64 of `[version = 1, mechanism, …]`: mechanism 1 is
//! AES-GCM followed by the 12-byte IV and ciphertext‖tag; 2 is RSA-OAEP-SHA-1 and 3 RSA-OAEP-SHA-256,
//! each followed by the RSA ciphertext.

// Without the feature only parsing and the "built without" answers are used.
#![cfg_attr(not(feature = "pkcs11"), allow(dead_code))]

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::{Identity, KeyEntry, KeyError, KeyPart, Recipient};

const KIND: &str = "pkcs11";

/// What a build without the `pkcs11` feature says about PKCS#11 keys.
pub const NOT_BUILT: &str =
    "veil was built without pkcs11 (rebuild with the default features or `--features pkcs11`)";

/// The AAD of every AES-GCM wrap.
pub const AAD: &[u8] = b"veil-pkcs11-v1";

const ENVELOPE_VERSION: u8 = 1;
const MECH_AES_GCM: u8 = 1;
const MECH_RSA_OAEP_SHA1: u8 = 2;
const MECH_RSA_OAEP_SHA256: u8 = 3;
const GCM_IV_LEN: usize = 12;

/// Where a module may be loaded from without `VEIL_PKCS11_MODULE` naming it.
const TRUSTED_MODULE_DIRS: [&str; 6] = [
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/lib",
    "/lib64",
    "/opt",
];

/// The longest PIN file read (PINs are short; this only stops reading a wrong, huge file).
const MAX_PIN_FILE: u64 = 4096;

/// Why a PKCS#11 URI cannot be used. Never holds a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UriError(pub String);

/// The object class a URI's `type` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    SecretKey,
    Public,
    Private,
    Cert,
    Data,
}

const PATH_ATTRS: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "object",
    "id",
    "type",
    "slot-id",
    "slot-description",
    "slot-manufacturer",
    "library-manufacturer",
    "library-description",
    "library-version",
];

const QUERY_ATTRS: [&str; 4] = ["module-name", "module-path", "pin-source", "pin-value"];

/// A parsed RFC 7512 URI. `Debug` leaves out the PIN.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// Decoded path attributes, in the order written.
    path: Vec<(String, Vec<u8>)>,
    /// Decoded query attributes, without `pin-value`.
    query: Vec<(String, Vec<u8>)>,
    pin_value: Option<Zeroizing<String>>,
    /// The URI as written, without `pin-value`.
    public: String,
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Uri")
            .field("uri", &self.public)
            .field("pin_value", &self.pin_value.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// Percent-decodes one attribute value (RFC 3986 §2.1).
fn percent_decode(name: &str, text: &str) -> Result<Vec<u8>, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        UriError(format!(
                            "{name}: '%' must be followed by two hex digits (percent-encoding)"
                        ))
                    })?;
                out.push(hex);
                i += 3;
            }
            b if b.is_ascii_control() || b == b' ' => {
                return Err(UriError(format!(
                    "{name}: spaces and control characters must be percent-encoded (%20)"
                )))
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn split_attr(part: &str) -> Result<(String, &str), UriError> {
    let (name, value) = part
        .split_once('=')
        .ok_or_else(|| UriError(format!("attribute {part:?} has no '='")))?;
    let name = String::from_utf8(percent_decode("attribute name", name)?)
        .map_err(|_| UriError("attribute names must be text".into()))?;
    Ok((name.to_ascii_lowercase(), value))
}

impl Pkcs11Uri {
    /// Parses `pkcs11:path-attrs[?query-attrs]`.
    pub fn parse(text: &str) -> Result<Pkcs11Uri, UriError> {
        let text = text.trim();
        let rest = text
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &text[7..])
            .ok_or_else(|| UriError("a PKCS#11 URI starts with \"pkcs11:\"".into()))?;
        if rest.contains('#') {
            return Err(UriError(
                "a PKCS#11 URI has no fragment ('#' must be percent-encoded as %23)".into(),
            ));
        }
        let (path_text, query_text) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut path: Vec<(String, Vec<u8>)> = Vec::new();
        for part in path_text.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = split_attr(part)?;
            if !PATH_ATTRS.contains(&name.as_str()) {
                return Err(UriError(format!(
                    "unknown path attribute {name:?} (known: {})",
                    PATH_ATTRS.join(", ")
                )));
            }
            if path.iter().any(|(n, _)| *n == name) {
                return Err(UriError(format!("attribute {name:?} is given twice")));
            }
            let value = percent_decode(&name, value)?;
            if name != "id" && std::str::from_utf8(&value).is_err() {
                return Err(UriError(format!("{name}: not UTF-8 text")));
            }
            path.push((name, value));
        }
        let mut query: Vec<(String, Vec<u8>)> = Vec::new();
        let mut pin_value = None;
        let mut public_query: Vec<&str> = Vec::new();
        for part in query_text
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = split_attr(part)?;
            if name.starts_with("x-") {
                public_query.push(part);
                continue; // vendor attributes: not ours to interpret
            }
            if !QUERY_ATTRS.contains(&name.as_str()) {
                return Err(UriError(format!(
                    "unknown query attribute {name:?} (known: {})",
                    QUERY_ATTRS.join(", ")
                )));
            }
            if query.iter().any(|(n, _)| *n == name) || (name == "pin-value" && pin_value.is_some())
            {
                return Err(UriError(format!("attribute {name:?} is given twice")));
            }
            let decoded = Zeroizing::new(percent_decode(&name, value)?);
            if name == "pin-value" {
                let pin = std::str::from_utf8(&decoded)
                    .map_err(|_| UriError("pin-value: not UTF-8 text".into()))?;
                pin_value = Some(Zeroizing::new(pin.to_string()));
            } else {
                std::str::from_utf8(&decoded)
                    .map_err(|_| UriError(format!("{name}: not UTF-8 text")))?;
                query.push((name, decoded.to_vec()));
                public_query.push(part);
            }
        }
        let uri = Pkcs11Uri {
            public: if public_query.is_empty() {
                format!("pkcs11:{path_text}")
            } else {
                format!("pkcs11:{path_text}?{}", public_query.join("&"))
            },
            path,
            query,
            pin_value,
        };
        if uri.pin_value.is_some() && uri.query_text("pin-source").is_some() {
            return Err(UriError(
                "a URI may give pin-value or pin-source, not both".into(),
            ));
        }
        if uri.query_text("module-name").is_some() {
            return Err(UriError(
                "module-name is not supported; give module-path=/path/to/module.so or set VEIL_PKCS11_MODULE".into(),
            ));
        }
        if let Some(t) = uri.attr_text("type") {
            ObjectType::parse(t)?;
        }
        if let Some(t) = uri.attr_text("slot-id") {
            t.parse::<u64>()
                .map_err(|_| UriError("slot-id must be a decimal number".into()))?;
        }
        if let Some(path) = uri.query_text("module-path") {
            if !Path::new(path).is_absolute() {
                return Err(UriError("module-path must be an absolute path".into()));
            }
        }
        if uri.attr("object").is_none() && uri.attr("id").is_none() {
            return Err(UriError(
                "the URI must name the key with object=LABEL or id=%XX…".into(),
            ));
        }
        Ok(uri)
    }

    /// The URI as written, without `pin-value`: what the metadata stores and messages show.
    pub fn public(&self) -> &str {
        &self.public
    }

    /// A path attribute's decoded bytes.
    pub fn attr(&self, name: &str) -> Option<&[u8]> {
        self.path
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// A text path attribute (every one but `id` is checked to be UTF-8).
    pub fn attr_text(&self, name: &str) -> Option<&str> {
        self.attr(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A query attribute (other than `pin-value`).
    pub fn query_text(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    pub fn object_type(&self) -> Option<ObjectType> {
        self.attr_text("type")
            .and_then(|t| ObjectType::parse(t).ok())
    }

    pub fn has_pin_value(&self) -> bool {
        self.pin_value.is_some()
    }

    /// The same key, however the URI was written: attributes in a fixed order, no PIN.
    pub fn same_key(&self, other: &Pkcs11Uri) -> bool {
        let sorted = |uri: &Pkcs11Uri| {
            let mut path = uri.path.clone();
            path.sort();
            (path, uri.query_text("module-path").map(String::from))
        };
        sorted(self) == sorted(other)
    }
}

impl ObjectType {
    fn parse(text: &str) -> Result<ObjectType, UriError> {
        Ok(match text {
            "secret-key" => ObjectType::SecretKey,
            "public" => ObjectType::Public,
            "private" => ObjectType::Private,
            "cert" => ObjectType::Cert,
            "data" => ObjectType::Data,
            other => {
                return Err(UriError(format!(
                    "type {other:?} is not one of secret-key, public, private, cert, data"
                )))
            }
        })
    }
}

/// Splits `URI[,URI…]`: a comma starts a new URI only where `pkcs11:` follows it, since commas
/// are legal inside attribute values.
pub fn split_uris(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split(',') {
        let starts_uri = piece
            .trim_start()
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("pkcs11:"));
        match out.last_mut() {
            Some(last) if !starts_uri => {
                last.push(',');
                last.push_str(piece);
            }
            _ => out.push(piece.to_string()),
        }
    }
    out.into_iter()
        .map(|s| s.trim().trim_end_matches([',', ' ']).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Settings read from the environment once.
#[derive(Clone, Default)]
struct Settings {
    module: Option<PathBuf>,
    pin: Option<Zeroizing<String>>,
    pin_file: Option<PathBuf>,
    allow_pin_value: bool,
}

impl Settings {
    fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        Settings {
            module: var("VEIL_PKCS11_MODULE").map(PathBuf::from),
            pin: var("VEIL_PKCS11_PIN").map(Zeroizing::new),
            pin_file: var("VEIL_PKCS11_PIN_FILE").map(PathBuf::from),
            allow_pin_value: var("VEIL_PKCS11_ALLOW_PIN_VALUE").as_deref() == Some("1"),
        }
    }

    /// The module to load for `uri`, under the trust rule of the module doc.
    fn module(&self, uri: &Pkcs11Uri) -> Result<PathBuf, String> {
        let env_module = self.module.as_ref().map(|m| canonical(m));
        match uri.query_text("module-path").map(PathBuf::from) {
            Some(path) => {
                let path = canonical(&path);
                let trusted = TRUSTED_MODULE_DIRS.iter().any(|d| path.starts_with(d))
                    || env_module.as_ref() == Some(&path);
                match (trusted, env_module) {
                    (true, _) => Ok(path),
                    (false, Some(env)) => Ok(env),
                    (false, None) => Err(format!(
                        "module-path {} is not under a system library directory ({}); set VEIL_PKCS11_MODULE to that path to allow it",
                        path.display(),
                        TRUSTED_MODULE_DIRS.join(", ")
                    )),
                }
            }
            None => env_module.ok_or_else(|| {
                "no PKCS#11 module: add ?module-path=/path/to/module.so to the URI or set VEIL_PKCS11_MODULE".into()
            }),
        }
    }

    /// The PIN for `uri`, if any source gives one.
    fn pin(&self, uri: &Pkcs11Uri) -> Result<Option<Zeroizing<String>>, String> {
        if let Some(pin) = &uri.pin_value {
            if !self.allow_pin_value {
                return Err(pin_value_refused());
            }
            return Ok(Some(pin.clone()));
        }
        if let Some(source) = uri.query_text("pin-source") {
            let path = source
                .strip_prefix("file://")
                .or_else(|| source.strip_prefix("file:"))
                .unwrap_or(source);
            if !Path::new(path).is_absolute() {
                return Err(format!(
                    "pin-source {source:?}: only file:/absolute/path is supported"
                ));
            }
            return read_pin_file(Path::new(path)).map(Some);
        }
        if let Some(pin) = &self.pin {
            return Ok(Some(pin.clone()));
        }
        if let Some(path) = &self.pin_file {
            return read_pin_file(path)
                .map(Some)
                .map_err(|why| format!("VEIL_PKCS11_PIN_FILE: {why}"));
        }
        Ok(None)
    }
}

fn pin_value_refused() -> String {
    "the URI holds a pin-value, which veil refuses (it ends up in shell history and files); use pin-source=file:/path, VEIL_PKCS11_PIN or VEIL_PKCS11_PIN_FILE, or set VEIL_PKCS11_ALLOW_PIN_VALUE=1".into()
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The first line of a PIN file, without its line ending.
fn read_pin_file(path: &Path) -> Result<Zeroizing<String>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|why| format!("cannot read the PIN file {}: {why}", path.display()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PIN_FILE)
        .read_to_end(&mut bytes)
        .map_err(|why| format!("cannot read the PIN file {}: {why}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("the PIN file {} is not UTF-8 text", path.display()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!("the PIN file {} is empty", path.display()));
    }
    Ok(Zeroizing::new(line.to_string()))
}

/// A PKCS#11 key to wrap data keys with.
pub struct Pkcs11Recipient {
    uri: Pkcs11Uri,
    settings: Settings,
}

impl Pkcs11Recipient {
    /// Parses the URI, with settings from this process' environment.
    pub fn parse(text: &str) -> Result<Pkcs11Recipient, KeyError> {
        Pkcs11Recipient::parse_with_env(text, |name| std::env::var(name).ok())
    }

    /// Parses the URI, with `VEIL_PKCS11_*` settings from `env`.
    pub fn parse_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Pkcs11Recipient, KeyError> {
        let uri = Pkcs11Uri::parse(text).map_err(|why| KeyError {
            kind: KIND,
            name: public_name(text),
            reason: why.0,
        })?;
        let settings = Settings::from_env(&env);
        let error = |reason: String| KeyError {
            kind: KIND,
            name: uri.public().to_string(),
            reason,
        };
        if !cfg!(feature = "pkcs11") {
            return Err(error(NOT_BUILT.into()));
        }
        if uri.has_pin_value() && !settings.allow_pin_value {
            return Err(error(pin_value_refused()));
        }
        if matches!(uri.object_type(), Some(ObjectType::Cert | ObjectType::Data)) {
            return Err(error(
                "type must be secret-key (AES), public or private (RSA)".into(),
            ));
        }
        Ok(Pkcs11Recipient { uri, settings })
    }
}

/// A name for a URI that did not parse: the text up to any query, so no PIN can leak.
fn public_name(text: &str) -> String {
    let text = text.trim();
    text.split_once('?').map_or(text, |(p, _)| p).to_string()
}

impl Recipient for Pkcs11Recipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        #[cfg(feature = "pkcs11")]
        {
            let enc = hsm::wrap(&self.uri, &self.settings, part.as_bytes()).map_err(|reason| {
                KeyError {
                    kind: KIND,
                    name: self.uri.public().to_string(),
                    reason,
                }
            })?;
            Ok(KeyEntry::Pkcs11 {
                uri: self.uri.public().to_string(),
                created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                enc,
            })
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = part;
            Err(KeyError {
                kind: KIND,
                name: self.uri.public().to_string(),
                reason: NOT_BUILT.into(),
            })
        }
    }

    fn name(&self) -> String {
        self.uri.public().to_string()
    }
}

/// Opens `pkcs11` entries with the tokens this process can reach.
pub struct Pkcs11Identity {
    settings: Settings,
}

impl Pkcs11Identity {
    pub fn from_process_env() -> Pkcs11Identity {
        Pkcs11Identity::from_env(|name| std::env::var(name).ok())
    }

    /// With `VEIL_PKCS11_*` settings from `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Pkcs11Identity {
        Pkcs11Identity {
            settings: Settings::from_env(&env),
        }
    }
}

impl Identity for Pkcs11Identity {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let KeyEntry::Pkcs11 { uri, enc, .. } = entry else {
            return None;
        };
        let error = |reason: String| KeyError {
            kind: KIND,
            name: entry.name(),
            reason,
        };
        if !cfg!(feature = "pkcs11") {
            return Some(Err(error(NOT_BUILT.into())));
        }
        let parsed = match Pkcs11Uri::parse(uri) {
            Ok(parsed) => parsed,
            Err(why) => return Some(Err(error(format!("bad URI in the metadata: {why}")))),
        };
        #[cfg(feature = "pkcs11")]
        {
            Some(
                hsm::unwrap(&parsed, &self.settings, enc)
                    .map(KeyPart)
                    .map_err(error),
            )
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = (parsed, enc);
            None
        }
    }
}

/// The envelope's parts, checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    AesGcm { iv: &'a [u8], sealed: &'a [u8] },
    RsaOaep { sha256: bool, ciphertext: &'a [u8] },
}

impl<'a> Envelope<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Envelope<'a>, String> {
        match bytes {
            [ENVELOPE_VERSION, MECH_AES_GCM, rest @ ..] if rest.len() > GCM_IV_LEN + 16 => {
                let (iv, sealed) = rest.split_at(GCM_IV_LEN);
                Ok(Envelope::AesGcm { iv, sealed })
            }
            [ENVELOPE_VERSION, MECH_RSA_OAEP_SHA1 | MECH_RSA_OAEP_SHA256, rest @ ..]
                if !rest.is_empty() =>
            {
                Ok(Envelope::RsaOaep {
                    sha256: bytes[1] == MECH_RSA_OAEP_SHA256,
                    ciphertext: rest,
                })
            }
            [ENVELOPE_VERSION, m, ..] if ![MECH_AES_GCM, MECH_RSA_OAEP_SHA1, MECH_RSA_OAEP_SHA256].contains(m) => {
                Err(format!("unknown mechanism {m} in the enc envelope"))
            }
            [ENVELOPE_VERSION, ..] => Err("the enc envelope is truncated".into()),
            [v, ..] => Err(format!(
                "enc envelope version {v} is not supported (this veil reads version {ENVELOPE_VERSION})"
            )),
            [] => Err("enc is empty".into()),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENVELOPE_VERSION];
        match self {
            Envelope::AesGcm { iv, sealed } => {
                out.push(MECH_AES_GCM);
                out.extend_from_slice(iv);
                out.extend_from_slice(sealed);
            }
            Envelope::RsaOaep { sha256, ciphertext } => {
                out.push(if *sha256 {
                    MECH_RSA_OAEP_SHA256
                } else {
                    MECH_RSA_OAEP_SHA1
                });
                out.extend_from_slice(ciphertext);
            }
        }
        out
    }
}

#[cfg(feature = "pkcs11")]
mod hsm {
    //! The calls into the module.

    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::error::{Error, RvError};
    use cryptoki::mechanism::aead::GcmParams;
    use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
    use cryptoki::mechanism::{Mechanism, MechanismType};
    use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
    use cryptoki::session::{Session, UserType};
    use cryptoki::slot::Slot;
    use cryptoki::types::AuthPin;
    use rand::RngCore;
    use zeroize::Zeroizing;

    use super::{Envelope, ObjectType, Pkcs11Uri, Settings, AAD, GCM_IV_LEN};

    thread_local! {
        /// One initialised context per module: `C_Initialize` may run once per process.
        static CONTEXTS: RefCell<Vec<(PathBuf, Pkcs11)>> = const { RefCell::new(Vec::new()) };
    }

    /// A short text for a module error: the function and the return value's name.
    fn p11(err: Error) -> String {
        match err {
            Error::Pkcs11(rv, function) => format!("{function:?} failed: {rv:?}"),
            Error::LibraryLoading(why) => format!("cannot load the module: {why}"),
            other => other.to_string(),
        }
    }

    fn context(module: &Path) -> Result<Pkcs11, String> {
        if let Some(ctx) = CONTEXTS.with(|c| {
            c.borrow()
                .iter()
                .find(|(p, _)| p == module)
                .map(|(_, ctx)| ctx.clone())
        }) {
            return Ok(ctx);
        }
        let ctx = Pkcs11::new(module).map_err(|e| {
            format!(
                "cannot load the PKCS#11 module {}: {}",
                module.display(),
                p11(e)
            )
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(format!(
                    "cannot initialise {}: {}",
                    module.display(),
                    p11(e)
                ))
            }
        }
        CONTEXTS.with(|c| c.borrow_mut().push((module.to_path_buf(), ctx.clone())));
        Ok(ctx)
    }

    fn matches(wanted: Option<&str>, actual: &str) -> bool {
        wanted.is_none_or(|w| w == actual.trim_end())
    }

    fn version_matches(wanted: Option<&str>, actual: &str) -> bool {
        match wanted {
            None => true,
            Some(w) if w.contains('.') => w == actual,
            Some(w) => actual.split('.').next() == Some(w),
        }
    }

    /// The one slot whose token the URI's attributes select.
    fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, String> {
        let info = ctx.get_library_info().map_err(p11)?;
        if !matches(
            uri.attr_text("library-manufacturer"),
            info.manufacturer_id(),
        ) || !matches(
            uri.attr_text("library-description"),
            info.library_description(),
        ) || !version_matches(
            uri.attr_text("library-version"),
            &info.library_version().to_string(),
        ) {
            return Err("the module does not match the URI's library-* attributes".into());
        }
        let mut found = Vec::new();
        for slot in ctx.get_slots_with_token().map_err(p11)? {
            if let Some(id) = uri.attr_text("slot-id") {
                if id.parse::<u64>().ok() != Some(slot.id()) {
                    continue;
                }
            }
            if uri.attr("slot-description").is_some() || uri.attr("slot-manufacturer").is_some() {
                let slot_info = ctx.get_slot_info(slot).map_err(p11)?;
                if !matches(
                    uri.attr_text("slot-description"),
                    slot_info.slot_description(),
                ) || !matches(
                    uri.attr_text("slot-manufacturer"),
                    slot_info.manufacturer_id(),
                ) {
                    continue;
                }
            }
            let token = match ctx.get_token_info(slot) {
                Ok(token) => token,
                Err(_) => continue,
            };
            if matches(uri.attr_text("token"), token.label())
                && matches(uri.attr_text("manufacturer"), token.manufacturer_id())
                && matches(uri.attr_text("serial"), token.serial_number())
                && matches(uri.attr_text("model"), token.model())
            {
                found.push(slot);
            }
        }
        match found.as_slice() {
            [slot] => Ok(*slot),
            [] => Err("no token matches the URI".into()),
            more => Err(format!(
                "{} tokens match the URI; add token=… or serial=…",
                more.len()
            )),
        }
    }

    /// A session on the URI's token, logged in when there is a PIN (or failing when the token
    /// needs one and there is none).
    fn session(
        uri: &Pkcs11Uri,
        settings: &Settings,
        need_login: bool,
    ) -> Result<(Session, bool), String> {
        let module = settings.module(uri)?;
        let ctx = context(&module)?;
        let slot = find_slot(&ctx, uri)?;
        let login_required = ctx
            .get_token_info(slot)
            .map(|t| t.login_required())
            .unwrap_or(true);
        let session = ctx.open_ro_session(slot).map_err(p11)?;
        let pin = settings.pin(uri)?;
        let logged_in = pin.is_some();
        match pin {
            Some(pin) => {
                let auth = AuthPin::new(pin.as_str().into());
                match session.login(UserType::User, Some(&auth)) {
                    Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                    Err(Error::Pkcs11(RvError::PinIncorrect, _)) => {
                        return Err("the token refused the PIN (CKR_PIN_INCORRECT)".into())
                    }
                    Err(Error::Pkcs11(RvError::PinLocked, _)) => {
                        return Err("the token's user PIN is locked (CKR_PIN_LOCKED)".into())
                    }
                    Err(e) => return Err(format!("login failed: {}", p11(e))),
                }
            }
            None if need_login && login_required => {
                return Err(
                    "the token needs a PIN: add pin-source=file:/path to the URI or set VEIL_PKCS11_PIN or VEIL_PKCS11_PIN_FILE"
                        .into(),
                )
            }
            None => {}
        }
        Ok((session, logged_in))
    }

    fn template(uri: &Pkcs11Uri, class: ObjectClass, key_type: KeyType) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class), Attribute::KeyType(key_type)];
        if let Some(label) = uri.attr("object") {
            template.push(Attribute::Label(label.to_vec()));
        }
        if let Some(id) = uri.attr("id") {
            template.push(Attribute::Id(id.to_vec()));
        }
        template
    }

    fn describe(class: ObjectClass, key_type: KeyType) -> &'static str {
        match (class, key_type) {
            (ObjectClass::SECRET_KEY, _) => "AES secret key",
            (ObjectClass::PUBLIC_KEY, _) => "RSA public key",
            _ => "RSA private key",
        }
    }

    /// Zero or one key of this class and type matching the URI; more than one is an error.
    fn find_key(
        session: &Session,
        uri: &Pkcs11Uri,
        class: ObjectClass,
        key_type: KeyType,
    ) -> Result<Option<ObjectHandle>, String> {
        let found = session
            .find_objects(&template(uri, class, key_type))
            .map_err(p11)?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            more => Err(format!(
                "{} objects match the URI as {}; add id=… to tell them apart",
                more.len(),
                describe(class, key_type)
            )),
        }
    }

    fn need_key(
        session: &Session,
        uri: &Pkcs11Uri,
        class: ObjectClass,
        key_type: KeyType,
    ) -> Result<ObjectHandle, String> {
        find_key(session, uri, class, key_type)?.ok_or_else(|| {
            format!(
                "no {} matches the URI on the token (is the PIN for the right token?)",
                describe(class, key_type)
            )
        })
    }

    fn oaep(sha256: bool) -> Mechanism<'static> {
        let params = if sha256 {
            PkcsOaepParams::new(
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                PkcsOaepSource::empty(),
            )
        } else {
            PkcsOaepParams::new(
                MechanismType::SHA1,
                PkcsMgfType::MGF1_SHA1,
                PkcsOaepSource::empty(),
            )
        };
        Mechanism::RsaPkcsOaep(params)
    }

    /// Wraps `part`; returns the base64 envelope.
    pub(super) fn wrap(
        uri: &Pkcs11Uri,
        settings: &Settings,
        part: &[u8],
    ) -> Result<String, String> {
        let kind = uri.object_type();
        // Public keys are visible without a login; secret keys are not.
        let (session, logged_in) = session(uri, settings, kind == Some(ObjectType::SecretKey))?;
        let aes = match kind {
            Some(ObjectType::Public | ObjectType::Private) => None,
            Some(ObjectType::SecretKey) => Some(need_key(
                &session,
                uri,
                ObjectClass::SECRET_KEY,
                KeyType::AES,
            )?),
            _ => find_key(&session, uri, ObjectClass::SECRET_KEY, KeyType::AES)?,
        };
        let envelope = match aes {
            Some(key) => {
                let mut iv = [0u8; GCM_IV_LEN];
                rand::rngs::OsRng.fill_bytes(&mut iv);
                let sealed = {
                    let params = GcmParams::new(&mut iv, AAD, 128.into()).map_err(p11)?;
                    session
                        .encrypt(&Mechanism::AesGcm(params), key, part)
                        .map_err(|e| format!("AES-GCM encryption failed: {}", p11(e)))?
                };
                // `iv` now holds what the token used (HSMs may generate it themselves).
                Envelope::AesGcm {
                    iv: &iv,
                    sealed: &sealed,
                }
                .encode()
            }
            None => {
                let key = find_key(&session, uri, ObjectClass::PUBLIC_KEY, KeyType::RSA)?
                    .ok_or_else(|| {
                        if kind.is_none() {
                            let hint = if logged_in {
                                ""
                            } else {
                                " (no PIN was given, so secret keys are not visible)"
                            };
                            format!("no AES secret key or RSA public key matches the URI on the token{hint}")
                        } else {
                            "no RSA public key matches the URI on the token".to_string()
                        }
                    })?;
                let (sha256, ciphertext) = match session.encrypt(&oaep(true), key, part) {
                    Ok(ct) => (true, ct),
                    Err(Error::Pkcs11(
                        RvError::MechanismParamInvalid
                        | RvError::ArgumentsBad
                        | RvError::MechanismInvalid,
                        _,
                    )) => (
                        false,
                        session
                            .encrypt(&oaep(false), key, part)
                            .map_err(|e| format!("RSA-OAEP encryption failed: {}", p11(e)))?,
                    ),
                    Err(e) => return Err(format!("RSA-OAEP encryption failed: {}", p11(e))),
                };
                Envelope::RsaOaep {
                    sha256,
                    ciphertext: &ciphertext,
                }
                .encode()
            }
        };
        Ok(STANDARD.encode(envelope))
    }

    /// Unwraps a base64 envelope.
    pub(super) fn unwrap(
        uri: &Pkcs11Uri,
        settings: &Settings,
        enc: &str,
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        let bytes = STANDARD
            .decode(enc.trim())
            .map_err(|_| "enc is not base64".to_string())?;
        let envelope = Envelope::decode(&bytes)?;
        let (session, _) = session(uri, settings, true)?;
        let part = match envelope {
            Envelope::AesGcm { iv, sealed } => {
                let key = need_key(&session, uri, ObjectClass::SECRET_KEY, KeyType::AES)?;
                let mut iv = iv.to_vec();
                let params = GcmParams::new(&mut iv, AAD, 128.into()).map_err(p11)?;
                session
                    .decrypt(&Mechanism::AesGcm(params), key, sealed)
                    .map_err(|e| {
                        format!(
                            "AES-GCM decryption failed (wrong key or tampered enc): {}",
                            p11(e)
                        )
                    })?
            }
            Envelope::RsaOaep { sha256, ciphertext } => {
                let key = need_key(&session, uri, ObjectClass::PRIVATE_KEY, KeyType::RSA)?;
                session
                    .decrypt(&oaep(sha256), key, ciphertext)
                    .map_err(|e| {
                        format!(
                            "RSA-OAEP decryption failed (wrong key or tampered enc): {}",
                            p11(e)
                        )
                    })?
            }
        };
        let part = Zeroizing::new(part);
        if part.is_empty() {
            return Err("the token decrypted to nothing".into());
        }
        Ok(part)
    }
}

#[cfg(test)]
mod tests;
