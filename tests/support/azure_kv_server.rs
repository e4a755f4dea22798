//! A loopback stand-in for Azure Key Vault's keys REST API, for veil's tests.
//!
//! It follows the published REST reference for what veil (and sops) use, over **HTTPS** (the SDK
//! sends tokens over TLS only) with a throwaway CA and a separate leaf certificate for
//! `127.0.0.1` / `localhost`:
//!
//! * `POST /keys/{name}/{version}/encrypt?api-version=…` with `{"alg": "RSA-OAEP-256", "value":
//!   base64url}` → `{"kid": "{vault}/keys/{name}/{version}", "value": base64url}`;
//! * `POST /keys/{name}/{version}/decrypt?api-version=…`, the same shapes the other way;
//! * `GET /keys/{name}[/{version}]?api-version=…` → `{"key": {"kid", "kty": "RSA", "n", "e", …},
//!   "attributes": {…}}` (what sops' `GetKey` reads when a URL has no version).
//!
//! An empty version segment (`/keys/k//encrypt`) means the key's latest version, and the `kid`
//! of the reply names the version used. Each version is a real RSA-2048 key and RSA-OAEP-256
//! (SHA-256, MGF1-SHA-256) is done for real, so a ciphertext only opens under the key version
//! that made it. Requests are checked as the service checks them: `api-version` must be a
//! published one, a POST needs a JSON body with a supported `alg` and a base64url `value`
//! (no padding). A request without `Authorization` gets the 401 challenge
//! `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/TENANT",
//! resource="https://vault.azure.net"` that the SDK needs to learn its token scope; an unknown
//! token gets 401 (with the challenge), a token without access to the key 403, an unknown key or
//! version 404; errors are Key Vault's `{"error": {"code", "message"}}`.
//!
//! It also plays the Microsoft Entra token endpoint for a service principal (point
//! `AZURE_AUTHORITY_HOST` at the server): `POST /{tenant}/oauth2/v2.0/token` with the form
//! `grant_type=client_credentials&client_id=…&client_secret=…&scope=https://vault.azure.net/.default`
//! → `{"token_type": "Bearer", "expires_in", "access_token"}` (a token the vault then accepts), or
//! 401 `invalid_client` with `AADSTS7000215`.
//!
//! A service principal may instead hold a certificate ([`Builder::certificate_principal`]): the
//! form then carries `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
//! and `client_assertion`, a JWT checked as Entra documents it
//! (learn.microsoft.com/entra/identity-platform/certificate-credentials): header `alg` RS256
//! (or PS256), `x5t` (base64url SHA-1) or `x5t#S256` (base64url SHA-256) naming one of the
//! client's registered certificates, `x5c` (if sent) starting with that certificate; the
//! signature verified with the certificate's public key; claims `aud` = this token endpoint's
//! URL, `iss` = `sub` = the client ID, a `jti`, `nbf` not in the future and `exp` not past, at
//! most 10 minutes ahead (5 minutes of clock skew allowed). An unknown thumbprint or a bad
//! signature gets 401 `invalid_client` `AADSTS700027`, a time outside the window
//! `AADSTS700024`, a malformed JWT or wrong claims 400/401 `AADSTS50027`, an unknown client
//! `AADSTS700016`, as Entra answers them. One request per connection, one thread, on
//! 127.0.0.1 port 0. Only RSA-OAEP-256 is implemented.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Sign, Pss, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::http::{
    read_request, serve_tls, test_certificates, tls_config, write_json_with_headers, Listener,
};

/// Key Vault REST API versions the stand-in accepts (published ones).
const API_VERSIONS: [&str; 9] = [
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "2025-07-01",
    "2026-03-01-preview",
];

/// One request as the server saw it (headers lower-cased), for assertions.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

struct Version {
    id: String,
    key: RsaPrivateKey,
}

#[derive(Default)]
struct State {
    tenant: String,
    /// token → the keys it may use (`None`: all).
    tokens: Vec<(String, Option<Vec<String>>)>,
    /// key name → versions, oldest first.
    keys: HashMap<String, Vec<Version>>,
    seen: Vec<Seen>,
    vault_url: String,
    /// client_id → client_secret of service principals in the tenant.
    principals: Vec<(String, String)>,
    /// client_id → a certificate (DER) registered for it, and its public key.
    certificate_principals: Vec<(String, Vec<u8>, RsaPublicKey)>,
    issued: usize,
}

#[derive(Default)]
pub struct Builder {
    state: State,
}

/// RSA keys are slow to make in a debug build: a few per test binary, handed out in turn.
fn rsa_key() -> RsaPrivateKey {
    static POOL: OnceLock<Vec<RsaPrivateKey>> = OnceLock::new();
    static NEXT: Mutex<usize> = Mutex::new(0);
    let pool = POOL.get_or_init(|| {
        (0..4)
            .map(|_| RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key"))
            .collect()
    });
    let mut next = NEXT.lock().unwrap();
    *next += 1;
    pool[*next % pool.len()].clone()
}

fn version_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Builder {
    /// The tenant named in the authentication challenge.
    pub fn tenant(mut self, tenant: &str) -> Self {
        self.state.tenant = tenant.into();
        self
    }

    /// A bearer token that may use every key.
    pub fn token(mut self, token: &str) -> Self {
        self.state.tokens.push((token.into(), None));
        self
    }

    /// A bearer token that may use only these keys (403 for the others).
    pub fn limited_token(mut self, token: &str, keys: &[&str]) -> Self {
        self.state.tokens.push((
            token.into(),
            Some(keys.iter().map(|k| k.to_string()).collect()),
        ));
        self
    }

    /// A service principal of the tenant, allowed to use every key.
    pub fn service_principal(mut self, client_id: &str, secret: &str) -> Self {
        self.state
            .principals
            .push((client_id.into(), secret.into()));
        self
    }

    /// A service principal of the tenant authenticating with this certificate (several may be
    /// registered for one client), allowed to use every key.
    pub fn certificate_principal(mut self, client_id: &str, certificate: &ClientCert) -> Self {
        self.state.certificate_principals.push((
            client_id.into(),
            certificate.der.clone(),
            certificate.key.to_public_key(),
        ));
        self
    }

    /// An RSA key with `versions` versions (the last is the latest).
    pub fn key(mut self, name: &str, versions: usize) -> Self {
        let list = self.state.keys.entry(name.into()).or_default();
        for _ in 0..versions {
            list.push(Version {
                id: version_id(),
                key: rsa_key(),
            });
        }
        self
    }

    pub fn start(self) -> AzureKvServer {
        let certs = test_certificates();
        let config = tls_config(&certs.leaf_pem, &certs.leaf_key_pem);
        let mut state = self.state;
        if state.tenant.is_empty() {
            state.tenant = "00000000-0000-0000-0000-000000000000".into();
        }
        let state = Arc::new(Mutex::new(state));
        let listener = {
            let state = state.clone();
            Listener::start(move |stream| serve_tls(&config, stream, |tls| serve(tls, &state)))
        };
        let vault_url = format!("https://127.0.0.1:{}", listener.port);
        state.lock().unwrap().vault_url = vault_url.clone();
        AzureKvServer {
            vault_url,
            ca_pem: certs.ca_pem,
            state,
            _listener: listener,
        }
    }
}

pub struct AzureKvServer {
    /// `https://127.0.0.1:PORT`
    pub vault_url: String,
    /// The CA that signed the server's certificate, PEM.
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    _listener: Listener,
}

impl AzureKvServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The key's URL without a version, as users give it to `--azure-kv`.
    pub fn url(&self, name: &str) -> String {
        format!("{}/keys/{name}", self.vault_url)
    }

    /// The key's versions, oldest first.
    pub fn versions(&self, name: &str) -> Vec<String> {
        self.state.lock().unwrap().keys[name]
            .iter()
            .map(|v| v.id.clone())
            .collect()
    }

    /// The public half of a key version.
    pub fn public_key(&self, name: &str, version: &str) -> RsaPublicKey {
        let state = self.state.lock().unwrap();
        let v = state.keys[name].iter().find(|v| v.id == version).unwrap();
        v.key.to_public_key()
    }

    /// Opens an `enc` (base64url RSA-OAEP-256) with a key version's private key.
    pub fn open(&self, name: &str, version: &str, enc: &str) -> Option<Vec<u8>> {
        let state = self.state.lock().unwrap();
        let v = state.keys.get(name)?.iter().find(|v| v.id == version)?;
        let bytes = URL_SAFE_NO_PAD.decode(enc).ok()?;
        v.key.decrypt(Oaep::new::<sha2::Sha256>(), &bytes).ok()
    }

    /// The token endpoint's verdict on a client assertion: `Err("AADSTS…: …")` when refused.
    pub fn check_assertion(&self, client_id: &str, jwt: &str) -> Result<(), String> {
        let state = self.state.lock().unwrap();
        check_assertion(&state, client_id, jwt).map_err(|(status, _, code, description)| {
            format!("{status} AADSTS{code}: {description}")
        })
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn serve(stream: &mut (impl Read + Write), state: &Mutex<State>) {
    let Some(request) = read_request(stream) else {
        return;
    };
    let (path, query) = match request.target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (request.target.clone(), String::new()),
    };
    let (status, extra, answer) = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            method: request.method.clone(),
            path: path.clone(),
            query: query.clone(),
            headers: request.headers.clone(),
            body: request.body.clone(),
        });
        if path == format!("/{}/oauth2/v2.0/token", state.tenant) {
            issue_token(&mut state, &request.method, &request.headers, &request.body)
        } else {
            handle(
                &state,
                &request.method,
                &path,
                &query,
                &request.headers,
                &request.body,
            )
        }
    };
    let extra: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, v.clone())).collect();
    write_json_with_headers(stream, status, &extra, &answer);
}

type Reply = (u16, Vec<(&'static str, String)>, Value);

fn error(status: u16, code: &str, message: &str) -> Reply {
    (
        status,
        Vec::new(),
        json!({"error": {"code": code, "message": message}}),
    )
}

fn challenge(state: &State, status: u16, message: &str) -> Reply {
    let header = format!(
        "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.azure.net\"",
        state.tenant
    );
    (
        status,
        vec![("WWW-Authenticate", header)],
        json!({"error": {"code": "Unauthorized", "message": message}}),
    )
}

/// The Entra ID client-credentials grant.
fn issue_token(
    state: &mut State,
    method: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Reply {
    let entra_error = |status: u16, error: &str, code: u32, description: &str| -> Reply {
        (
            status,
            Vec::new(),
            json!({"error": error, "error_description": format!("AADSTS{code}: {description}"), "error_codes": [code]}),
        )
    };
    let form = headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if method != "POST" || !form {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain a form.",
        );
    }
    let body = String::from_utf8_lossy(body);
    let field = |name: &str| {
        body.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
            .unwrap_or_default()
    };
    if field("grant_type") != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            "The grant type is not supported.",
        );
    }
    if field("scope") != "https://vault.azure.net/.default" {
        return entra_error(
            400,
            "invalid_scope",
            70011,
            "The provided scope is not valid.",
        );
    }
    let client_id = field("client_id");
    let assertion = field("client_assertion");
    if !assertion.is_empty() {
        if field("client_assertion_type") != ASSERTION_TYPE {
            return entra_error(
                400,
                "invalid_request",
                50027,
                "Invalid client_assertion_type.",
            );
        }
        if let Err((status, error, code, description)) =
            check_assertion(state, &client_id, &assertion)
        {
            return entra_error(status, error, code, &description);
        }
        return grant(state, &client_id);
    }
    let secret = field("client_secret");
    if !state
        .principals
        .iter()
        .any(|(c, s)| *c == client_id && *s == secret)
    {
        return entra_error(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    grant(state, &client_id)
}

/// A token for `client_id` that the vault accepts.
fn grant(state: &mut State, client_id: &str) -> Reply {
    state.issued += 1;
    let token = format!("eyJ0eXAiOiJKV1QifQ.issued-{}-{}", client_id, state.issued);
    state.tokens.push((token.clone(), None));
    (
        200,
        Vec::new(),
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
    )
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead `exp` may be, and the clock skew allowed.
const MAX_LIFETIME_SECS: i64 = 600;
const SKEW_SECS: i64 = 300;

type Refusal = (u16, &'static str, u32, String);

/// Entra ID's checks of a certificate client assertion.
fn check_assertion(state: &State, client_id: &str, jwt: &str) -> Result<(), Refusal> {
    let malformed = |why: &str| {
        (
            400,
            "invalid_request",
            50027,
            format!("JWT token is invalid or malformed. {why}"),
        )
    };
    let registered: Vec<&(String, Vec<u8>, RsaPublicKey)> = state
        .certificate_principals
        .iter()
        .filter(|(c, _, _)| c == client_id)
        .collect();
    if registered.is_empty() {
        return Err((
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                state.tenant
            ),
        ));
    }
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(malformed("It must have three parts."));
    };
    let json = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (json(header_b64), json(claims_b64)) else {
        return Err(malformed("The header or payload is not base64url JSON."));
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
        return Err(malformed("The signature is not base64url."));
    };
    let alg = header["alg"].as_str().unwrap_or_default();
    if alg != "RS256" && alg != "PS256" {
        return Err(malformed(&format!("Unsupported alg '{alg}'.")));
    }
    let text = |v: &Value| v.as_str().map(str::to_string);
    // x5t#S256 (SHA-256) when given, else x5t (SHA-1).
    let (wanted, sha256) = match (text(&header["x5t#S256"]), text(&header["x5t"])) {
        (Some(s256), _) => (s256, true),
        (None, Some(s1)) => (s1, false),
        (None, None) => return Err(malformed("The header has no x5t or x5t#S256.")),
    };
    let digest_of = |der: &[u8]| -> Vec<u8> {
        if sha256 {
            Sha256::digest(der).to_vec()
        } else {
            Sha1::digest(der).to_vec()
        }
    };
    let key_not_found = || {
        let hex: String = URL_SAFE_NO_PAD
            .decode(&wanted)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        (
            401,
            "invalid_client",
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key was not \
                 found., Thumbprint of key used by client: '{hex}', Please visit the Azure \
                 Portal, Graph Explorer or directly use MS Graph to see configured keys for app \
                 Id '{client_id}'.]"
            ),
        )
    };
    let Some((_, der, public)) = registered
        .iter()
        .find(|(_, der, _)| URL_SAFE_NO_PAD.encode(digest_of(der)) == wanted)
    else {
        return Err(key_not_found());
    };
    if let Some(x5c) = header.get("x5c") {
        let first = x5c
            .as_array()
            .and_then(|list| list.first())
            .and_then(Value::as_str)
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok());
        if first.as_ref() != Some(der) {
            return Err(key_not_found());
        }
    }
    let digest = Sha256::digest(format!("{header_b64}.{claims_b64}").as_bytes());
    let verified = if alg == "RS256" {
        public.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
    } else {
        public.verify(Pss::new::<Sha256>(), &digest, &signature)
    };
    if verified.is_err() {
        return Err((
            401,
            "invalid_client",
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature \
             value did not match the expected signature value.]"
                .into(),
        ));
    }
    let audience = format!("{}/{}/oauth2/v2.0/token", state.vault_url, state.tenant);
    if claims["aud"].as_str() != Some(audience.as_str()) {
        return Err((
            401,
            "invalid_client",
            50027,
            format!("Invalid JWT token. The audience must be '{audience}'."),
        ));
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err((
            401,
            "invalid_client",
            50027,
            "Invalid JWT token. iss and sub must be the client ID.".into(),
        ));
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err(malformed("The jti claim is missing."));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (Some(nbf), Some(exp)) = (claims["nbf"].as_i64(), claims["exp"].as_i64()) else {
        return Err(malformed("The nbf and exp claims are required."));
    };
    if nbf > now + SKEW_SECS || exp < now - SKEW_SECS || exp > now + MAX_LIFETIME_SECS + SKEW_SECS {
        return Err((
            401,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    Ok(())
}

/// A client certificate for a service principal: an RSA-2048 key (from the pool) and a
/// self-signed certificate for it, made with rcgen from that key.
pub struct ClientCert {
    pub key: RsaPrivateKey,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
}

impl ClientCert {
    pub fn new(name: &str) -> ClientCert {
        use rsa::pkcs8::EncodePrivateKey;
        let key = rsa_key();
        let pkcs8 = key.to_pkcs8_der().expect("PKCS#8");
        let pair = rcgen::KeyPair::try_from(pkcs8.as_bytes()).expect("rcgen takes the RSA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&pair).expect("certificate");
        ClientCert {
            key,
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }

    /// A certificate whose key is not `other`'s (the pool repeats keys).
    pub fn other_than(other: &ClientCert, name: &str) -> ClientCert {
        loop {
            let cert = ClientCert::new(name);
            if cert.key != other.key {
                return cert;
            }
        }
    }

    /// The private key as PKCS#8 PEM (`PRIVATE KEY`).
    pub fn pkcs8_pem(&self) -> String {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        self.key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    }

    /// The private key as PKCS#1 PEM (`RSA PRIVATE KEY`).
    pub fn pkcs1_pem(&self) -> String {
        use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
        self.key.to_pkcs1_pem(LineEnding::LF).unwrap().to_string()
    }

    /// The private key as encrypted PKCS#8 (`ENCRYPTED PRIVATE KEY`), PBES2 with
    /// PBKDF2-HMAC-SHA256 (2048 rounds, `openssl pkcs8 -topk8`'s default) and AES-256-CBC.
    pub fn encrypted_pkcs8_pem(&self, password: &str) -> String {
        use rsa::pkcs8::{EncodePrivateKey, LineEnding};
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        rand::thread_rng().fill_bytes(&mut iv);
        let params =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &salt, &iv).unwrap();
        let der = self.key.to_pkcs8_der().unwrap();
        let encrypted = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
            .unwrap()
            .encrypt_with_params(params, password)
            .unwrap();
        encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .unwrap()
            .to_string()
    }

    /// base64url SHA-1 of the certificate: its `x5t`.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha1::digest(&self.der))
    }
}

/// `application/x-www-form-urlencoded` value decoding.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn handle(
    state: &State,
    method: &str,
    path: &str,
    query: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Reply {
    match query_value(query, "api-version") {
        None => {
            return error(
                400,
                "BadParameter",
                "The request URI contains an invalid or missing api-version query parameter.",
            )
        }
        Some(v) if !API_VERSIONS.contains(&v) => {
            return error(
                400,
                "BadParameter",
                &format!("The specified version ({v}) is not recognized."),
            )
        }
        Some(_) => {}
    }
    // Authentication first, as the service does: every call needs a bearer token.
    let Some(auth) = headers.get("authorization") else {
        return challenge(
            state,
            401,
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
    };
    let Some(token) = auth.strip_prefix("Bearer ") else {
        return challenge(
            state,
            401,
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
    };
    let Some((_, allowed)) = state.tokens.iter().find(|(t, _)| t == token) else {
        return challenge(
            state,
            401,
            "AKV10032: Invalid issuer or signature: the access token is not valid.",
        );
    };
    let Some(rest) = path.strip_prefix("/keys/") else {
        return error(404, "NotFound", "The requested resource was not found.");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (name, version, operation) = match (method, parts.as_slice()) {
        ("GET", [name]) => (*name, "", None),
        ("GET", [name, version]) => (*name, *version, None),
        ("POST", [name, version, op]) if *op == "encrypt" || *op == "decrypt" => {
            (*name, *version, Some(*op))
        }
        _ => return error(404, "NotFound", "The requested resource was not found."),
    };
    if let Some(keys) = allowed {
        if !keys.iter().any(|k| k == name) {
            let action = operation.unwrap_or("get");
            return (
                403,
                Vec::new(),
                json!({"error": {
                    "code": "Forbidden",
                    "message": format!("Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/keys/{action}/action' Resource: 'keys/{name}'"),
                    "innererror": {"code": "ForbiddenByRbac"}
                }}),
            );
        }
    }
    let Some(versions) = state.keys.get(name) else {
        return error(
            404,
            "KeyNotFound",
            &format!("A key with (name/id) {name} was not found in this key vault."),
        );
    };
    let found = if version.is_empty() {
        versions.last()
    } else {
        versions.iter().find(|v| v.id == version)
    };
    let Some(found) = found else {
        return error(
            404,
            "KeyNotFound",
            &format!("A key with (name/id) {name}/{version} was not found in this key vault."),
        );
    };
    let kid = format!("{}/keys/{name}/{}", state.vault_url, found.id);
    let Some(operation) = operation else {
        let public = found.key.to_public_key();
        return (
            200,
            Vec::new(),
            json!({
                "key": {
                    "kid": kid,
                    "kty": "RSA",
                    "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
                    "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                    "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
                },
                "attributes": {"enabled": true, "recoveryLevel": "Recoverable+Purgeable"},
            }),
        );
    };
    let content_type = headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return error(
            400,
            "BadParameter",
            "The request body must be JSON (Content-Type: application/json).",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(400, "BadParameter", "The request body is not valid JSON.");
    };
    match body.get("alg").and_then(Value::as_str) {
        Some("RSA-OAEP-256") => {}
        Some(other) => {
            return error(
                400,
                "BadParameter",
                &format!("Algorithm {other} is not supported by this stand-in."),
            )
        }
        None => return error(400, "BadParameter", "Property alg is required."),
    }
    let value = match body.get("value").and_then(Value::as_str) {
        Some(text) => match URL_SAFE_NO_PAD.decode(text) {
            Ok(bytes) => bytes,
            Err(_) => return error(400, "BadParameter", "Property value has invalid value."),
        },
        None => return error(400, "BadParameter", "Property value is required."),
    };
    let padding = || Oaep::new::<sha2::Sha256>();
    let result = if operation == "encrypt" {
        // RSA-OAEP-256 with a 2048-bit key takes at most 256 - 2 * 32 - 2 bytes.
        if value.is_empty() || value.len() > 190 {
            return error(400, "BadParameter", "Property value has invalid length.");
        }
        found
            .key
            .to_public_key()
            .encrypt(&mut rand::thread_rng(), padding(), &value)
            .expect("RSA-OAEP encryption")
    } else {
        match found.key.decrypt(padding(), &value) {
            Ok(plain) => plain,
            Err(_) => return error(400, "BadParameter", "The parameter is incorrect."),
        }
    };
    (
        200,
        Vec::new(),
        json!({"kid": kid, "value": URL_SAFE_NO_PAD.encode(result)}),
    )
}
