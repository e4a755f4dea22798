//! A loopback stand-in for the Google Cloud KMS REST API (v1), for veil's tests.
//!
//! It follows the published REST reference for what veil uses:
//! `POST /v1/{name}:encrypt` (`{"plaintext": b64, "additionalAuthenticatedData"?: b64}` →
//! `{"name", "ciphertext": b64}`) and `POST /v1/{name}:decrypt` (`{"ciphertext": b64,
//! "additionalAuthenticatedData"?}` → `{"plaintext": b64}`), where `name` is a CryptoKey resource
//! ID. It accepts what the official `google-cloud-kms-v1` client sends (the
//! `$alt=json;enum-encoding=int` query, `x-goog-api-client`, JSON bodies). Each CryptoKey is a
//! real AES-256-GCM key, so a ciphertext only opens under the key that made it. With a token
//! configured, every call needs `Authorization: Bearer <token>`. Errors are Google-style:
//! `{"error": {"code": 404, "message": "...", "status": "NOT_FOUND"}}`. Plain HTTP/1.1, one
//! request per connection, on 127.0.0.1 port 0, one thread.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

use crate::http::{read_request, write_json, Listener};

/// One request as the server saw it (headers lower-cased), for assertions.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct State {
    token: Option<String>,
    /// CryptoKey resource ID → AES key.
    keys: HashMap<String, [u8; 32]>,
    seen: Vec<Seen>,
}

#[derive(Default)]
pub struct Builder {
    state: State,
}

impl Builder {
    /// The bearer token every call must carry.
    pub fn token(mut self, token: &str) -> Self {
        self.state.token = Some(token.into());
        self
    }

    /// A CryptoKey `projects/…/cryptoKeys/…`.
    pub fn key(mut self, resource_id: &str) -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        self.state.keys.insert(resource_id.into(), key);
        self
    }

    pub fn start(self) -> GcpKmsServer {
        let state = Arc::new(Mutex::new(self.state));
        let listener = {
            let state = state.clone();
            Listener::start(move |mut stream| serve(&mut stream, &state))
        };
        GcpKmsServer {
            endpoint: format!("http://127.0.0.1:{}", listener.port),
            state,
            _listener: listener,
        }
    }
}

pub struct GcpKmsServer {
    /// `http://127.0.0.1:PORT`, for `SOPS_GCP_KMS_ENDPOINT`.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    _listener: Listener,
}

impl GcpKmsServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 request, answers it, and closes.
fn serve(stream: &mut TcpStream, state: &Mutex<State>) {
    let Some(request) = read_request(stream) else {
        return;
    };
    let (path, query) = match request.target.split_once('?') {
        Some((p, q)) => (percent_decode(p), q.to_string()),
        None => (percent_decode(&request.target), String::new()),
    };
    let (status, answer) = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            method: request.method.clone(),
            path: path.clone(),
            query,
            headers: request.headers.clone(),
        });
        handle(
            &state,
            &request.method,
            &path,
            &request.headers,
            &request.body,
        )
    };
    write_json(stream, status, &answer);
}

fn error(code: u16, status: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"error": {"code": code, "message": message, "status": status}}),
    )
}

fn b64_field(body: &Value, field: &str) -> Result<Option<Vec<u8>>, (u16, Value)> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => STANDARD.decode(s).map(Some).map_err(|_| {
            error(
                400,
                "INVALID_ARGUMENT",
                &format!("Invalid value at '{field}' (TYPE_BYTES), Base64 decoding failed"),
            )
        }),
        Some(_) => Err(error(
            400,
            "INVALID_ARGUMENT",
            &format!("Invalid value at '{field}' (TYPE_BYTES)"),
        )),
    }
}

fn handle(
    state: &State,
    method: &str,
    path: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    if let Some(token) = &state.token {
        let expected = format!("Bearer {token}");
        if headers.get("authorization") != Some(&expected) {
            return error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            );
        }
    }
    if method != "POST" {
        return error(404, "NOT_FOUND", "The requested URL was not found");
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return error(404, "NOT_FOUND", "The requested URL was not found");
    };
    let Some((name, verb)) = rest.rsplit_once(':') else {
        return error(404, "NOT_FOUND", "The requested URL was not found");
    };
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let Some(key) = state.keys.get(name) else {
        return error(404, "NOT_FOUND", &format!("CryptoKey {name} not found."));
    };
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let aad = match b64_field(&body, "additionalAuthenticatedData") {
        Ok(aad) => aad.unwrap_or_default(),
        Err(e) => return e,
    };
    match verb {
        "encrypt" => {
            let plaintext = match b64_field(&body, "plaintext") {
                Ok(Some(p)) if !p.is_empty() => p,
                Ok(_) => return error(400, "INVALID_ARGUMENT", "Plaintext is required."),
                Err(e) => return e,
            };
            let mut nonce = [0u8; 12];
            rand::thread_rng().fill_bytes(&mut nonce);
            let sealed = cipher
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: &plaintext,
                        aad: &aad,
                    },
                )
                .expect("encrypt");
            let mut ciphertext = nonce.to_vec();
            ciphertext.extend(sealed);
            (
                200,
                json!({
                    "name": format!("{name}/cryptoKeyVersions/1"),
                    "ciphertext": STANDARD.encode(&ciphertext),
                    "protectionLevel": 1,
                }),
            )
        }
        "decrypt" => {
            let ciphertext = match b64_field(&body, "ciphertext") {
                Ok(Some(c)) => c,
                Ok(None) => return error(400, "INVALID_ARGUMENT", "Ciphertext is required."),
                Err(e) => return e,
            };
            let opened = (ciphertext.len() > 12)
                .then(|| {
                    cipher
                        .decrypt(
                            Nonce::from_slice(&ciphertext[..12]),
                            Payload {
                                msg: &ciphertext[12..],
                                aad: &aad,
                            },
                        )
                        .ok()
                })
                .flatten();
            match opened {
                Some(plaintext) => (
                    200,
                    json!({
                        "plaintext": STANDARD.encode(&plaintext),
                        "usedPrimary": true,
                        "protectionLevel": 1,
                    }),
                ),
                None => error(
                    400,
                    "INVALID_ARGUMENT",
                    "Decryption failed: the ciphertext is invalid.",
                ),
            }
        }
        _ => error(404, "NOT_FOUND", "The requested URL was not found"),
    }
}
