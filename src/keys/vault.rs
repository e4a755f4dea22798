//! HashiCorp Vault / OpenBao transit keys (`hc_vault` entries, spec §7.7), behind the `vault`
//! cargo feature.
//!
//! A key is named by its URI, `https://vault.example.org:8200/v1/transit/keys/my-key`: the
//! address (`scheme://host[:port]`), the engine path (everything between `/v1/` and the segment
//! before the key name, so `secret/team/transit` works) and the key name. Wrapping posts
//! `{"plaintext": base64(part)}` to `{address}/v1/{engine_path}/encrypt/{key_name}` and stores the
//! returned `ciphertext` (`vault:v1:…`) verbatim; unwrapping posts `{"ciphertext": enc}` to
//! `…/decrypt/{key_name}` and base64-decodes the `plaintext`. The address stored in the file is
//! always the one used, as in sops.
//!
//! Environment, as sops and the Vault client read it:
//!
//! | variable | meaning |
//! |---|---|
//! | `VAULT_TOKEN` | the token (sent as `X-Vault-Token`); else `~/.vault-token` (trimmed) |
//! | `VAULT_NAMESPACE` | Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace` |
//! | `VAULT_CACERT`, `VAULT_CACERT_BYTES`, `VAULT_CAPATH` | PEM CA file, PEM text, or a directory of PEM files to trust instead of the system roots |
//! | `VAULT_CLIENT_CERT`, `VAULT_CLIENT_KEY` | PEM client certificate and key for mutual TLS |
//! | `VAULT_SKIP_VERIFY` | `true`/`1`: do not verify the server's certificate (as the Vault client) |
//! | `VAULT_CLIENT_TIMEOUT` | seconds per request (default: veil's reply timeout, 30 s or `VEIL_KEY_SERVICE_TIMEOUT`; see `net.rs`) |
//! | `VAULT_ADDR` | used only for an entry stored without an address (sops would fail there) |
//! | `SOPS_HC_VAULT_ALLOWLIST` | `all` (default), `none`, or comma-separated address prefixes; other addresses are refused before any request |
//!
//! Beyond sops (its #1660), when there is no token veil logs in, first match wins:
//!
//! | variables | login |
//! |---|---|
//! | `VAULT_ROLE_ID` (+ `VAULT_SECRET_ID`) | AppRole, `POST /v1/auth/approle/login` |
//! | `VAULT_K8S_ROLE` (+ `VAULT_K8S_TOKEN_PATH`, default `/var/run/secrets/kubernetes.io/serviceaccount/token`) | Kubernetes, `POST /v1/auth/kubernetes/login` |
//! | `VAULT_JWT_ROLE` + `VAULT_JWT` or `VAULT_JWT_PATH` | JWT/OIDC, `POST /v1/auth/jwt/login` |
//! | `VAULT_AUTH_MOUNT` | the mount path of the chosen method instead of `approle`/`kubernetes`/`jwt` |
//!
//! Requests follow veil's network policy (`net.rs`): a connect timeout of at most 5 s, the
//! request timeout above, and up to `net::ATTEMPTS` attempts with backoff when the server cannot
//! be reached or answers 429 or 5xx (the Vault client's own `VAULT_MAX_RETRIES` default is the
//! same three attempts).
//!
//! A token obtained by login is kept in memory for the process (per address, namespace and
//! role) and never written anywhere. Tokens, secret IDs, JWTs and key parts never appear in an
//! error; they are held in `Zeroizing` buffers, and requests carry them in headers and bodies,
//! never in a URL. Redirects are not followed, so a token is only ever sent to the stored address.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use regex::Regex;
use serde_json::Value;
use zeroize::Zeroizing;

use super::{net, Identity, KeyEntry, KeyError, KeyPart, Recipient};

const KIND: &str = "hc_vault";

/// The file in the home directory where the Vault CLI keeps its token.
const TOKEN_FILE: &str = ".vault-token";
const K8S_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// How much of a server's error text goes into a message.
const MAX_SERVER_MESSAGE: usize = 300;

/// Where a transit key lives: `{address}/v1/{engine_path}/keys/{key_name}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitKey {
    pub address: String,
    pub engine_path: String,
    pub key_name: String,
}

impl TransitKey {
    /// Parses a key URI as sops does: a scheme is required, the path must look like
    /// `/v<N>/<engine…>/<anything>/<key>`, and a prefix before `/v<N>/` is refused.
    pub fn parse(uri: &str) -> Result<TransitKey, KeyError> {
        let uri = uri.trim();
        let rejected = |reason: &str| KeyError {
            kind: KIND,
            name: uri.to_string(),
            reason: reason.to_string(),
        };
        const EXAMPLE: &str = "https://vault.example.com:8200/v1/transit/keys/keyName";
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(rejected(&format!(
                "missing scheme in Vault URL (should be like {EXAMPLE})"
            )));
        };
        let scheme_ok = scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return Err(rejected(&format!(
                "missing scheme in Vault URL (should be like {EXAMPLE})"
            )));
        }
        if rest.contains(['?', '#']) {
            return Err(rejected(
                "a Vault key URL takes no query or fragment (?… or #…)",
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(rejected("the Vault URL has no host"));
        }
        let (engine_path, key_name) = engine_and_key(path).map_err(|why| rejected(&why))?;
        Ok(TransitKey {
            address: format!("{}://{authority}", scheme.to_ascii_lowercase()),
            engine_path,
            key_name,
        })
    }

    /// The key's URI, as sops prints it and as `KeyEntry::name` spells it.
    pub fn uri(&self) -> String {
        format!(
            "{}/v1/{}/keys/{}",
            self.address, self.engine_path, self.key_name
        )
    }

    fn endpoint(&self, action: &str) -> String {
        let engine = self.engine_path.trim_matches('/');
        if engine.is_empty() {
            format!("{action}/{}", self.key_name)
        } else {
            format!("{engine}/{action}/{}", self.key_name)
        }
    }
}

fn engine_and_key(path: &str) -> Result<(String, String), String> {
    static PREFIXED: OnceLock<Regex> = OnceLock::new();
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    let prefixed = PREFIXED
        .get_or_init(|| Regex::new(r"/[^/]+/v[0-9]+/[^/]+/[^/]+/[^/]+").expect("static regex"));
    let shape =
        SHAPE.get_or_init(|| Regex::new(r"/v[0-9]+/[^/]+/[^/]+/[^/]+").expect("static regex"));
    if prefixed.is_match(path) {
        return Err(
            "running Vault with a prefixed URL is not supported (the path must start \
                    with /v1/, like https://vault.example.com:8200/v1/transit/keys/keyName)"
                .into(),
        );
    }
    if !shape.is_match(path) {
        return Err(
            "the Vault path is not formatted correctly (it should be like \
                    https://vault.example.com:8200/v1/transit/keys/keyName)"
                .into(),
        );
    }
    let dirs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if dirs.iter().any(|d| matches!(*d, "." | "..")) {
        return Err("the Vault path must not contain . or .. segments".into());
    }
    // The shape check guarantees at least four segments: v1, engine, `keys`, name.
    let (Some(key), true) = (dirs.last(), dirs.len() >= 4) else {
        return Err("the Vault path has no key name".into());
    };
    let engine: Vec<&str> = dirs[1..dirs.len() - 2]
        .iter()
        .copied()
        .filter(|d| !d.is_empty())
        .collect();
    Ok((engine.join("/"), (*key).to_string()))
}

/// `SOPS_HC_VAULT_ALLOWLIST`: which addresses may be contacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    all: bool,
    prefixes: Vec<String>,
}

impl Allowlist {
    /// sops' rule: unset or empty means `all`; `none` allows nothing; otherwise a comma list of
    /// prefixes, each trimmed of spaces and given a trailing `/`; an empty item is an error.
    pub fn parse(text: Option<&str>) -> Result<Allowlist, String> {
        let text = text.filter(|t| !t.is_empty()).unwrap_or("all");
        match text {
            "all" => {
                return Ok(Allowlist {
                    all: true,
                    prefixes: Vec::new(),
                })
            }
            "none" => {
                return Ok(Allowlist {
                    all: false,
                    prefixes: Vec::new(),
                })
            }
            _ => {}
        }
        let mut prefixes = Vec::new();
        for (index, item) in text.split(',').enumerate() {
            let item = item.trim_matches(' ');
            if item.is_empty() {
                return Err(format!(
                    "SOPS_HC_VAULT_ALLOWLIST's entry {} is empty",
                    index + 1
                ));
            }
            let mut prefix = item.to_string();
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            prefixes.push(prefix);
        }
        Ok(Allowlist {
            all: false,
            prefixes,
        })
    }

    /// Whether `address` (with a `/` appended) starts with one of the prefixes.
    pub fn allows(&self, address: &str) -> bool {
        if self.all {
            return true;
        }
        let mut address = address.to_string();
        if !address.ends_with('/') {
            address.push('/');
        }
        self.prefixes
            .iter()
            .any(|p| address.starts_with(p.as_str()))
    }
}

enum JwtSource {
    Value(Zeroizing<String>),
    File(PathBuf),
}

enum Login {
    AppRole {
        role_id: String,
        secret_id: Option<Zeroizing<String>>,
        mount: String,
    },
    Kubernetes {
        role: String,
        token_path: PathBuf,
        mount: String,
    },
    Jwt {
        role: String,
        jwt: JwtSource,
        mount: String,
    },
}

impl Login {
    fn method(&self) -> &'static str {
        match self {
            Login::AppRole { .. } => "AppRole",
            Login::Kubernetes { .. } => "Kubernetes",
            Login::Jwt { .. } => "JWT",
        }
    }

    fn mount(&self) -> &str {
        match self {
            Login::AppRole { mount, .. }
            | Login::Kubernetes { mount, .. }
            | Login::Jwt { mount, .. } => mount,
        }
    }

    /// Identifies the login for the process-wide token cache (no secret in it).
    fn cache_key(&self) -> String {
        let role = match self {
            Login::AppRole { role_id, .. } => role_id,
            Login::Kubernetes { role, .. } | Login::Jwt { role, .. } => role,
        };
        format!("{}|{}|{role}", self.method(), self.mount())
    }

    /// The login request body.
    fn body(&self) -> Result<Zeroizing<String>, String> {
        match self {
            Login::AppRole {
                role_id, secret_id, ..
            } => {
                let mut fields = vec![("role_id", role_id.as_str())];
                if let Some(secret) = secret_id {
                    fields.push(("secret_id", secret.as_str()));
                }
                Ok(json_object(&fields))
            }
            Login::Kubernetes {
                role, token_path, ..
            } => {
                let jwt = read_secret_file(token_path, "the Kubernetes service account token")?;
                Ok(json_object(&[("role", role), ("jwt", &jwt)]))
            }
            Login::Jwt { role, jwt, .. } => {
                let jwt = match jwt {
                    JwtSource::Value(value) => value.clone(),
                    JwtSource::File(path) => read_secret_file(path, "VAULT_JWT_PATH")?,
                };
                Ok(json_object(&[("role", role), ("jwt", &jwt)]))
            }
        }
    }
}

/// A JSON object of string fields, built in a zeroized buffer (the values may be secrets).
fn json_object(fields: &[(&str, &str)]) -> Zeroizing<String> {
    let capacity = fields
        .iter()
        .map(|(k, v)| 6 * (k.len() + v.len()) + 8)
        .sum::<usize>()
        + 2;
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    out.push(b'{');
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        // Writing strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, value);
    }
    out.push(b'}');
    let bytes = std::mem::take(&mut *out);
    // serde_json writes UTF-8 only.
    Zeroizing::new(String::from_utf8(bytes).unwrap_or_default())
}

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<String>, String> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .map_err(|why| format!("cannot read {what} ({}): {why}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{what} ({}) is not UTF-8", path.display()))?
        .trim();
    if text.is_empty() {
        return Err(format!("{what} ({}) is empty", path.display()));
    }
    Ok(Zeroizing::new(text.to_string()))
}

#[derive(Default)]
struct Tls {
    cacert: Option<PathBuf>,
    cacert_bytes: Option<String>,
    capath: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    skip_verify: bool,
}

/// Everything read from the environment, once.
struct Settings {
    token: Option<Zeroizing<String>>,
    token_file: Option<PathBuf>,
    default_address: Option<String>,
    namespace: Option<String>,
    tls: Tls,
    /// Connect timeout, and the whole request's.
    timeouts: net::Timeouts,
    /// Problems found in the variables, reported when a key is used.
    invalid: Option<String>,
    allowlist: Result<Allowlist, String>,
    login: Option<Login>,
}

impl Settings {
    fn from_env(env: &dyn Fn(&str) -> Option<String>, home: Option<PathBuf>) -> Settings {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut invalid = None;
        let skip_verify = match var("VAULT_SKIP_VERIFY").as_deref().map(str::trim) {
            None => false,
            Some(v) => parse_bool(v).unwrap_or_else(|| {
                invalid = Some(format!("VAULT_SKIP_VERIFY={v:?} is not a boolean"));
                false
            }),
        };
        let mut timeouts = net::Timeouts::from_env(env).unwrap_or_else(|why| {
            invalid = Some(why);
            net::Timeouts::default()
        });
        if let Some(v) = var("VAULT_CLIENT_TIMEOUT") {
            match v.trim().trim_end_matches('s').parse::<u64>() {
                Ok(secs) if secs > 0 => {
                    timeouts.read = Duration::from_secs(secs);
                    timeouts.connect = net::CONNECT_TIMEOUT.min(timeouts.read);
                }
                _ => {
                    invalid = Some(format!(
                        "VAULT_CLIENT_TIMEOUT={v:?} is not a number of seconds"
                    ))
                }
            }
        }
        let mount = |default: &str| {
            var("VAULT_AUTH_MOUNT")
                .map(|m| m.trim().trim_matches('/').to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let login = if let Some(role_id) = var("VAULT_ROLE_ID") {
            Some(Login::AppRole {
                role_id: role_id.trim().to_string(),
                secret_id: var("VAULT_SECRET_ID").map(|s| Zeroizing::new(s.trim().to_string())),
                mount: mount("approle"),
            })
        } else if let Some(role) = var("VAULT_K8S_ROLE") {
            Some(Login::Kubernetes {
                role: role.trim().to_string(),
                token_path: var("VAULT_K8S_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(K8S_TOKEN_PATH)),
                mount: mount("kubernetes"),
            })
        } else if let Some(role) = var("VAULT_JWT_ROLE") {
            let jwt = match (var("VAULT_JWT"), var("VAULT_JWT_PATH")) {
                (Some(jwt), _) => Some(JwtSource::Value(Zeroizing::new(jwt.trim().to_string()))),
                (None, Some(path)) => Some(JwtSource::File(PathBuf::from(path))),
                (None, None) => {
                    invalid = Some(
                        "VAULT_JWT_ROLE is set but neither VAULT_JWT nor VAULT_JWT_PATH".into(),
                    );
                    None
                }
            };
            jwt.map(|jwt| Login::Jwt {
                role: role.trim().to_string(),
                jwt,
                mount: mount("jwt"),
            })
        } else {
            None
        };
        Settings {
            token: var("VAULT_TOKEN").map(|t| Zeroizing::new(t.trim().to_string())),
            token_file: home.map(|h| h.join(TOKEN_FILE)),
            default_address: var("VAULT_ADDR").map(|a| a.trim().trim_end_matches('/').to_string()),
            namespace: var("VAULT_NAMESPACE").map(|n| n.trim().to_string()),
            tls: Tls {
                cacert: var("VAULT_CACERT").map(PathBuf::from),
                cacert_bytes: var("VAULT_CACERT_BYTES"),
                capath: var("VAULT_CAPATH").map(PathBuf::from),
                client_cert: var("VAULT_CLIENT_CERT").map(PathBuf::from),
                client_key: var("VAULT_CLIENT_KEY").map(PathBuf::from),
                skip_verify,
            },
            timeouts,
            invalid,
            allowlist: Allowlist::parse(env("SOPS_HC_VAULT_ALLOWLIST").as_deref()),
            login,
        }
    }
}

/// Go's `strconv.ParseBool`, which the Vault client uses for `VAULT_SKIP_VERIFY`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Whether an I/O error means the connection could not be made or broke off (worth another
/// attempt), rather than, say, that the server's certificate is not trusted.
fn connection_lost(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | UnexpectedEof
            | HostUnreachable
            | NetworkUnreachable
            | AddrNotAvailable
    )
}

/// Why one request failed, and whether trying again may help.
struct PostFailure {
    message: String,
    transient: bool,
}

/// Tokens from logins, for the rest of the process: `(address|namespace|method|mount|role, token)`.
type TokenCache = Mutex<Vec<(String, Zeroizing<String>)>>;

fn login_cache() -> &'static TokenCache {
    static CACHE: OnceLock<TokenCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Talks to Vault servers with one set of settings.
struct Client {
    settings: Settings,
    agent: OnceLock<Result<ureq::Agent, String>>,
}

impl Client {
    fn new(settings: Settings) -> Client {
        Client {
            settings,
            agent: OnceLock::new(),
        }
    }

    fn agent(&self) -> Result<&ureq::Agent, String> {
        self.agent
            .get_or_init(|| build_agent(&self.settings))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The checks every request goes through before anything is sent.
    fn check(&self, address: &str) -> Result<(), String> {
        if let Some(why) = &self.settings.invalid {
            return Err(why.clone());
        }
        let allowlist = self.settings.allowlist.as_ref().map_err(Clone::clone)?;
        if !allowlist.allows(address) {
            return Err(format!("SOPS_HC_VAULT_ALLOWLIST does not allow {address}"));
        }
        Ok(())
    }

    /// The token for `address`: `VAULT_TOKEN`, `~/.vault-token`, a login, or none (a Vault
    /// agent proxy may add its own).
    fn token(&self, address: &str) -> Result<Option<Zeroizing<String>>, String> {
        if let Some(token) = &self.settings.token {
            return Ok(Some(token.clone()));
        }
        if let Some(path) = &self.settings.token_file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let bytes = Zeroizing::new(bytes);
                    let text = std::str::from_utf8(&bytes)
                        .map_err(|_| format!("{} is not UTF-8", path.display()))?;
                    let token = Zeroizing::new(text.trim().to_string());
                    if !token.is_empty() {
                        return Ok(Some(token));
                    }
                }
                Err(why) if why.kind() == std::io::ErrorKind::NotFound => {}
                Err(why) => {
                    return Err(format!("cannot read {}: {why}", path.display()));
                }
            }
        }
        let Some(login) = &self.settings.login else {
            return Ok(None);
        };
        let cache_key = format!(
            "{address}|{}|{}",
            self.settings.namespace.as_deref().unwrap_or(""),
            login.cache_key()
        );
        if let Ok(cache) = login_cache().lock() {
            if let Some((_, token)) = cache.iter().find(|(k, _)| *k == cache_key) {
                return Ok(Some(token.clone()));
            }
        }
        let body = login.body()?;
        let path = format!("auth/{}/login", login.mount());
        let mut response = self
            .post(address, &path, &body, None)
            .map_err(|why| format!("{} login failed: {why}", login.method()))?;
        let token = match response
            .get_mut("auth")
            .and_then(|auth| auth.get_mut("client_token"))
            .map(Value::take)
        {
            Some(Value::String(token)) if !token.is_empty() => Zeroizing::new(token),
            _ => {
                return Err(format!(
                    "{} login at {address}/v1/{path} returned no client token",
                    login.method()
                ))
            }
        };
        if let Ok(mut cache) = login_cache().lock() {
            cache.push((cache_key, token.clone()));
        }
        Ok(Some(token))
    }

    /// POSTs a JSON body to `{address}/v1/{path}`; returns the parsed answer of a 2xx status,
    /// else an error with the server's messages. Tried again (see `net::with_retries`) when the
    /// server cannot be reached or answers 429 or 5xx.
    fn post(
        &self,
        address: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> Result<Value, String> {
        let agent = self.agent()?;
        net::with_retries(
            || self.post_once(agent, address, path, body, token),
            |failure| failure.transient,
        )
        .map_err(|failure| failure.message)
    }

    fn post_once(
        &self,
        agent: &ureq::Agent,
        address: &str,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> Result<Value, PostFailure> {
        let url = format!("{}/v1/{path}", address.trim_end_matches('/'));
        let mut request = agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Vault-Request", "true");
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(namespace) = &self.settings.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let mut response = request.send(body.as_bytes()).map_err(|why| {
            let transient = match &why {
                ureq::Error::Io(io) => connection_lost(io),
                ureq::Error::ConnectionFailed | ureq::Error::Timeout(_) => true,
                _ => false,
            };
            PostFailure {
                message: if transient || matches!(why, ureq::Error::HostNotFound) {
                    format!("Vault at {address} is unreachable: {why}")
                } else {
                    format!("cannot reach Vault at {address}: {why}")
                },
                transient,
            }
        })?;
        let status = response.status().as_u16();
        let text =
            Zeroizing::new(
                response
                    .body_mut()
                    .read_to_string()
                    .map_err(|why| PostFailure {
                        message: format!("cannot read Vault's answer from {url}: {why}"),
                        transient: match &why {
                            ureq::Error::Io(io) => connection_lost(io),
                            ureq::Error::Timeout(_) => true,
                            _ => false,
                        },
                    })?,
            );
        if !(200..300).contains(&status) {
            let mut message = server_errors(&text);
            if status == 403 && token.is_none() {
                message.push_str(" (no token: set VAULT_TOKEN, write ~/.vault-token, or set up a login such as VAULT_ROLE_ID/VAULT_SECRET_ID)");
            }
            return Err(PostFailure {
                message: format!("Vault answered {status} for {url}: {message}"),
                transient: status == 429 || (500..600).contains(&status),
            });
        }
        let permanent = |message: String| PostFailure {
            message,
            transient: false,
        };
        if text.trim().is_empty() {
            return Err(permanent(format!(
                "Vault answered {status} for {url} with no data"
            )));
        }
        serde_json::from_str(&text).map_err(|_| {
            permanent(format!(
                "Vault answered {status} for {url} with something that is not JSON"
            ))
        })
    }

    /// Calls a transit endpoint with a token and returns the answer's `data.{field}`.
    fn transit(
        &self,
        key: &TransitKey,
        action: &str,
        body: &str,
        field: &str,
    ) -> Result<Zeroizing<String>, String> {
        self.check(&key.address)?;
        let token = self.token(&key.address)?;
        let path = key.endpoint(action);
        let mut answer = self.post(
            &key.address,
            &path,
            body,
            token.as_ref().map(|t| t.as_str()),
        )?;
        match answer
            .get_mut("data")
            .and_then(|data| data.get_mut(field))
            .map(Value::take)
        {
            Some(Value::String(text)) => Ok(Zeroizing::new(text)),
            Some(_) => Err(format!("Vault's {field} from {path} is not a string")),
            None => Err(format!("Vault's answer from {path} has no {field}")),
        }
    }
}

fn server_errors(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let messages: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut message = if messages.is_empty() {
        "no error message".to_string()
    } else {
        messages.join("; ")
    };
    if message.len() > MAX_SERVER_MESSAGE {
        let mut cut = MAX_SERVER_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

fn pem_certs(pem: &[u8], source: &str) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(why) => return Err(format!("{source}: not a valid PEM file: {why}")),
        }
    }
    if certs.is_empty() {
        return Err(format!("{source}: no PEM certificate found"));
    }
    Ok(certs)
}

fn read_file(path: &Path, var: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|why| format!("cannot read {var} ({}): {why}", path.display()))
}

/// The CA certificates to trust instead of the system's, as the Vault client picks them:
/// `VAULT_CACERT_BYTES`, else `VAULT_CACERT`, else every file in `VAULT_CAPATH`.
fn root_certs(tls: &Tls) -> Result<Option<Vec<ureq::tls::Certificate<'static>>>, String> {
    if let Some(pem) = &tls.cacert_bytes {
        return pem_certs(pem.as_bytes(), "VAULT_CACERT_BYTES").map(Some);
    }
    if let Some(path) = &tls.cacert {
        let source = format!("VAULT_CACERT ({})", path.display());
        return pem_certs(&read_file(path, "VAULT_CACERT")?, &source).map(Some);
    }
    if let Some(dir) = &tls.capath {
        let entries = std::fs::read_dir(dir)
            .map_err(|why| format!("cannot read VAULT_CAPATH ({}): {why}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        let mut certs = Vec::new();
        for path in paths {
            let source = format!("VAULT_CAPATH file {}", path.display());
            certs.extend(pem_certs(&read_file(&path, "VAULT_CAPATH")?, &source)?);
        }
        if certs.is_empty() {
            return Err(format!(
                "VAULT_CAPATH ({}) holds no certificate",
                dir.display()
            ));
        }
        return Ok(Some(certs));
    }
    Ok(None)
}

fn build_agent(settings: &Settings) -> Result<ureq::Agent, String> {
    use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let tls = &settings.tls;
    let roots = match root_certs(tls)? {
        Some(certs) => RootCerts::new_with_certs(&certs),
        None => RootCerts::PlatformVerifier,
    };
    let mut builder = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .disable_verification(tls.skip_verify);
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let chain = pem_certs(
                &read_file(cert, "VAULT_CLIENT_CERT")?,
                &format!("VAULT_CLIENT_CERT ({})", cert.display()),
            )?;
            let key_pem = Zeroizing::new(read_file(key, "VAULT_CLIENT_KEY")?);
            let key = PrivateKey::from_pem(&key_pem).map_err(|_| {
                format!(
                    "VAULT_CLIENT_KEY ({}) holds no PEM private key",
                    key.display()
                )
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => {
            return Err("VAULT_CLIENT_CERT and VAULT_CLIENT_KEY must be set together".into());
        }
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(settings.timeouts.connect))
        .timeout_global(Some(settings.timeouts.read))
        .tls_config(builder.build())
        .build();
    Ok(config.new_agent())
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" })
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A transit key to wrap the data key (or a share) with.
pub struct VaultRecipient {
    key: TransitKey,
    client: Client,
}

impl VaultRecipient {
    /// Parses a key URI; settings come from this process' environment.
    pub fn parse(uri: &str) -> Result<VaultRecipient, KeyError> {
        Ok(VaultRecipient::new(TransitKey::parse(uri)?))
    }

    /// A recipient for a key already known (e.g. from a file's metadata).
    pub fn new(key: TransitKey) -> VaultRecipient {
        VaultRecipient::with_env(key, |name| std::env::var(name).ok(), home_dir())
    }

    /// A recipient whose settings come from `env`, with `home` holding `.vault-token`.
    pub fn with_env(
        key: TransitKey,
        env: impl Fn(&str) -> Option<String>,
        home: Option<PathBuf>,
    ) -> VaultRecipient {
        VaultRecipient {
            key,
            client: Client::new(Settings::from_env(&env, home)),
        }
    }
}

impl Recipient for VaultRecipient {
    fn wrap(&self, part: &KeyPart) -> Result<KeyEntry, KeyError> {
        let encoded = Zeroizing::new(STANDARD.encode(part.as_bytes()));
        let body = json_object(&[("plaintext", &encoded)]);
        let enc = self
            .client
            .transit(&self.key, "encrypt", &body, "ciphertext")
            .map_err(|reason| KeyError {
                kind: KIND,
                name: self.key.uri(),
                reason,
            })?;
        Ok(KeyEntry::Vault {
            vault_address: self.key.address.clone(),
            engine_path: self.key.engine_path.clone(),
            key_name: self.key.key_name.clone(),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            enc: enc.to_string(),
        })
    }

    fn name(&self) -> String {
        self.key.uri()
    }
}

/// Opens `hc_vault` entries through the Vault server each names.
pub struct VaultIdentity {
    client: Client,
}

impl VaultIdentity {
    pub fn from_process_env() -> VaultIdentity {
        VaultIdentity::from_env(|name| std::env::var(name).ok(), home_dir())
    }

    /// Settings from `env`, with `home` holding `.vault-token`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>, home: Option<PathBuf>) -> VaultIdentity {
        VaultIdentity {
            client: Client::new(Settings::from_env(&env, home)),
        }
    }
}

impl Identity for VaultIdentity {
    fn unwrap(&self, entry: &KeyEntry) -> Option<Result<KeyPart, KeyError>> {
        let KeyEntry::Vault {
            vault_address,
            engine_path,
            key_name,
            enc,
            ..
        } = entry
        else {
            return None;
        };
        let error = |reason: String| KeyError {
            kind: KIND,
            name: entry.name(),
            reason,
        };
        let address = match (vault_address.trim(), &self.client.settings.default_address) {
            ("", Some(fallback)) => fallback.clone(),
            ("", None) => {
                return Some(Err(error(
                    "the entry has no vault_address (and VAULT_ADDR is not set)".into(),
                )))
            }
            (stored, _) => stored.trim_end_matches('/').to_string(),
        };
        let key = TransitKey {
            address,
            engine_path: engine_path.clone(),
            key_name: key_name.clone(),
        };
        let body = json_object(&[("ciphertext", enc)]);
        let result = self
            .client
            .transit(&key, "decrypt", &body, "plaintext")
            .and_then(|encoded| {
                STANDARD
                    .decode(encoded.trim())
                    .map(KeyPart::new)
                    .map_err(|_| "Vault's plaintext is not base64".to_string())
            })
            .map_err(error);
        Some(result)
    }
}

#[cfg(test)]
mod tests;
