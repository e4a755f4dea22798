//! A loopback stand-in for the Vault / OpenBao transit API, for veil's tests.
//!
//! It follows Vault's published HTTP API for what veil uses: `POST /v1/{mount}/encrypt/{key}`
//! (`{"plaintext": b64}` → `{"data": {"ciphertext": "vault:v1:…"}}`), `POST /v1/{mount}/decrypt/{key}`
//! (`{"ciphertext": …}` → `{"data": {"plaintext": b64}}`), and the AppRole, Kubernetes and JWT
//! logins (`POST /v1/auth/{mount}/login` → `{"auth": {"client_token": …}}`). Each transit key is
//! a real AES-256-GCM key, so a ciphertext only opens under the key that made it; every transit
//! call needs a known `X-Vault-Token` (403 `permission denied` otherwise), errors come back as
//! `{"errors": [...]}`. Plain HTTP/1.1 (one request per connection) or HTTPS with a throwaway CA.
//! It listens on 127.0.0.1, port 0, on one thread.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

use crate::http::{read_request, serve_tls, tls_config, write_json, Listener};

/// One request as the server saw it (headers lower-cased), for assertions.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    tokens: Vec<String>,
    /// `mount/key` → AES key.
    keys: HashMap<String, [u8; 32]>,
    /// login mount → (method, role or role_id, secret_id or jwt)
    logins: HashMap<String, (String, String, String)>,
    seen: Vec<Seen>,
    issued: usize,
    /// How many of the next requests get 503 "Vault is sealed".
    unavailable: usize,
}

/// What the server knows before it starts.
#[derive(Default)]
pub struct Builder {
    state: State,
    tls: Option<(String, String)>,
}

impl Builder {
    /// A token that may call the transit endpoints.
    pub fn token(mut self, token: &str) -> Self {
        self.state.tokens.push(token.into());
        self
    }

    /// A transit key `name` under the engine mounted at `mount` (may be nested).
    pub fn key(mut self, mount: &str, name: &str) -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        self.state.keys.insert(format!("{mount}/{name}"), key);
        self
    }

    pub fn approle(mut self, mount: &str, role_id: &str, secret_id: &str) -> Self {
        self.state.logins.insert(
            mount.into(),
            ("approle".into(), role_id.into(), secret_id.into()),
        );
        self
    }

    pub fn kubernetes(mut self, mount: &str, role: &str, jwt: &str) -> Self {
        self.state
            .logins
            .insert(mount.into(), ("kubernetes".into(), role.into(), jwt.into()));
        self
    }

    pub fn jwt(mut self, mount: &str, role: &str, jwt: &str) -> Self {
        self.state
            .logins
            .insert(mount.into(), ("jwt".into(), role.into(), jwt.into()));
        self
    }

    /// Serve HTTPS with this PEM certificate chain and key.
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    pub fn start(self) -> VaultServer {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let tls = self.tls.map(|(cert, key)| tls_config(&cert, &key));
        let state = Arc::new(Mutex::new(self.state));
        let listener = {
            let state = state.clone();
            Listener::start(move |mut stream| match &tls {
                Some(config) => serve_tls(config, stream, |tls| serve(tls, &state)),
                None => serve(&mut stream, &state),
            })
        };
        VaultServer {
            address: format!("{scheme}://127.0.0.1:{}", listener.port),
            port: listener.port,
            state,
            _listener: listener,
        }
    }
}

pub struct VaultServer {
    /// `http://127.0.0.1:PORT` or `https://…`
    pub address: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
    _listener: Listener,
}

impl VaultServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The URI of a key, as users give it to `--hc-vault-transit`.
    pub fn uri(&self, mount: &str, key: &str) -> String {
        format!("{}/v1/{mount}/keys/{key}", self.address)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Answers the next `count` requests with 503, as a sealed Vault does.
    pub fn answer_unavailable(&self, count: usize) {
        self.state.lock().unwrap().unavailable = count;
    }

    /// How many tokens logins have issued.
    pub fn logins(&self) -> usize {
        self.state.lock().unwrap().issued
    }
}

/// Reads one HTTP/1.1 request, answers it, and closes.
fn serve(stream: &mut (impl Read + Write), state: &Mutex<State>) {
    let Some(request) = read_request(stream) else {
        return;
    };
    let (status, answer) = handle(
        &request.method,
        &request.target,
        &request.headers,
        &request.body,
        state,
    );
    write_json(stream, status, &answer);
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "errors": [message] }))
}

fn handle(
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    state: &Mutex<State>,
) -> (u16, Value) {
    let mut state = state.lock().unwrap();
    state.seen.push(Seen {
        path: path.to_string(),
        headers: headers.clone(),
    });
    if state.unavailable > 0 {
        state.unavailable -= 1;
        return error(503, "Vault is sealed");
    }
    if method != "POST" && method != "PUT" {
        return error(405, "unsupported operation");
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(400, "failed to parse JSON input");
    };
    let Some(rest) = path.strip_prefix("/v1/") else {
        return error(404, "no handler for route");
    };
    if let Some(mount) = rest
        .strip_prefix("auth/")
        .and_then(|r| r.strip_suffix("/login"))
    {
        return login(&mut state, mount, &body);
    }
    let token = headers.get("x-vault-token").cloned().unwrap_or_default();
    if !state.tokens.contains(&token) {
        return error(403, "permission denied");
    }
    for action in ["encrypt", "decrypt"] {
        let marker = format!("/{action}/");
        let Some(at) = rest.rfind(&marker) else {
            continue;
        };
        let mount = &rest[..at];
        let name = &rest[at + marker.len()..];
        let Some(key) = state.keys.get(&format!("{mount}/{name}")).copied() else {
            return error(400, &format!("encryption key not found: {name}"));
        };
        let cipher = Aes256Gcm::new_from_slice(&key).expect("32-byte key");
        return if action == "encrypt" {
            let Some(plain) = body
                .get("plaintext")
                .and_then(Value::as_str)
                .and_then(|p| STANDARD.decode(p).ok())
            else {
                return error(400, "failed to base64-decode plaintext");
            };
            let mut nonce = [0u8; 12];
            rand::thread_rng().fill_bytes(&mut nonce);
            let mut sealed = nonce.to_vec();
            sealed.extend(
                cipher
                    .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
                    .expect("encrypt"),
            );
            (
                200,
                json!({ "data": { "ciphertext": format!("vault:v1:{}", STANDARD.encode(sealed)), "key_version": 1 } }),
            )
        } else {
            let sealed = body
                .get("ciphertext")
                .and_then(Value::as_str)
                .and_then(|c| c.strip_prefix("vault:v1:"))
                .and_then(|c| STANDARD.decode(c).ok());
            let Some(sealed) = sealed.filter(|s| s.len() > 12) else {
                return error(400, "invalid ciphertext: no prefix");
            };
            match cipher.decrypt(Nonce::from_slice(&sealed[..12]), &sealed[12..]) {
                Ok(plain) => (
                    200,
                    json!({ "data": { "plaintext": STANDARD.encode(plain) } }),
                ),
                Err(_) => error(400, "cipher: message authentication failed"),
            }
        };
    }
    error(404, "no handler for route")
}

fn login(state: &mut State, mount: &str, body: &Value) -> (u16, Value) {
    let Some((method, role, secret)) = state.logins.get(mount).cloned() else {
        return error(404, "no handler for route");
    };
    let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or("");
    let accepted = match method.as_str() {
        "approle" => field("role_id") == role && field("secret_id") == secret,
        _ => field("role") == role && field("jwt") == secret,
    };
    if !accepted {
        return error(400, "invalid role or credentials");
    }
    state.issued += 1;
    let token = format!("hvs.login-{method}-{}", state.issued);
    state.tokens.push(token.clone());
    (
        200,
        json!({ "auth": { "client_token": token, "renewable": true, "lease_duration": 3600 } }),
    )
}
