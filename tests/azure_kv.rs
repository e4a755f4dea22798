//! Azure Key Vault keys through the real binary, against the in-repo stand-in
//! (`tests/support/azure_kv_server.rs`: Key Vault's published keys REST API over HTTPS on
//! 127.0.0.1, port 0, with a throwaway CA that the sandbox trusts through VEIL_AZURE_CA_BUNDLE).

mod common;

#[cfg(feature = "azure")]
#[path = "support/azure_kv_server.rs"]
mod azure_kv_server;
#[cfg(feature = "azure")]
#[path = "support/http.rs"]
mod http;

use common::*;

const PLAIN: &str = "db:\n  user: app\n  password: hunter2\ntoken: s3cr3t\n";

#[cfg(not(feature = "azure"))]
#[test]
fn without_the_feature_azure_keys_are_refused_clearly() {
    let sandbox = Sandbox::new();
    sandbox.write("app.yaml", PLAIN);
    let url = "https://v.vault.azure.net/keys/k/1";
    let output = sandbox.run(&["encrypt", "--azure-kv", url, "app.yaml"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Azure Key Vault"), "{stderr}");
    assert!(stderr.contains("not available"), "{stderr}");
    let output = sandbox.run(&["rotate", "--add-azure-kv", url, "app.yaml"], None);
    assert!(!output.status.success());
}

#[cfg(feature = "azure")]
mod with_azure {
    use super::azure_kv_server::AzureKvServer;
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.veil-test-token";
    const NARROW_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.only-key-b";
    const KEY_A: &str = "sops-a";
    const KEY_B: &str = "sops-b";

    fn server() -> AzureKvServer {
        AzureKvServer::builder()
            .token(TOKEN)
            .limited_token(NARROW_TOKEN, &[KEY_B])
            .key(KEY_A, 2)
            .key(KEY_B, 1)
            .start()
    }

    /// A sandbox that trusts `server`'s CA and holds the plain `app.yaml`; `token` is the
    /// static bearer token, if any.
    fn sandbox_with(server: &AzureKvServer, token: Option<&str>) -> Sandbox {
        let mut sandbox = Sandbox::new();
        sandbox.write("app.yaml", PLAIN);
        let ca = sandbox.dir.path().join("azure-ca.pem");
        std::fs::write(&ca, &server.ca_pem).unwrap();
        sandbox.env("VEIL_AZURE_CA_BUNDLE", ca.to_string_lossy());
        if let Some(token) = token {
            sandbox.env("VEIL_AZURE_ACCESS_TOKEN", token);
        }
        sandbox
    }

    fn sandbox(server: &AzureKvServer) -> Sandbox {
        sandbox_with(server, Some(TOKEN))
    }

    fn decrypts(sandbox: &Sandbox) {
        let out = ok(sandbox.run(&["decrypt", "app.yaml"], None));
        assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
    }

    /// The same file in a fresh sandbox with these settings.
    fn elsewhere(server: &AzureKvServer, text: &str, token: Option<&str>) -> Sandbox {
        let other = sandbox_with(server, token);
        other.write("app.yaml", text);
        other
    }

    #[test]
    fn round_trip_records_the_latest_version_and_sops_metadata_shape() {
        let server = server();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        let text = sandbox.read("app.yaml");
        assert!(!text.contains("hunter2"));
        let entries = key_entries_of(&text, "azure_kv");
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];

        // spec §5.2 names the fields; §5.3: sops 3.13 writes them sorted bytewise.
        let names: Vec<&str> = entry.keys().filter_map(|k| k.as_str()).collect();
        assert_eq!(names, ["created_at", "enc", "name", "vault_url", "version"]);
        assert_eq!(field(entry, "vault_url"), server.vault_url);
        assert_eq!(field(entry, "name"), KEY_A);
        // No version given: the latest, as the service reported it in `kid`.
        let versions = server.versions(KEY_A);
        assert_eq!(field(entry, "version"), versions[1]);
        assert!(
            chrono::DateTime::parse_from_rfc3339(&field(entry, "created_at")).is_ok(),
            "{}",
            field(entry, "created_at")
        );
        // `enc`: base64url without padding of the RSA-OAEP-256 ciphertext of the data key.
        let enc = field(entry, "enc");
        assert!(!enc.contains(['+', '/', '=']), "{enc}");
        assert_eq!(URL_SAFE_NO_PAD.decode(&enc).unwrap().len(), 256);
        let data_key = server.open(KEY_A, &versions[1], &enc).expect("opens");
        assert_eq!(data_key.len(), 32);

        decrypts(&elsewhere(&server, &text, Some(TOKEN)));

        // What the official client sent: the 401 challenge first, then the bearer token; the
        // published paths (empty version segment for "latest"), a GA api-version.
        let seen = server.seen();
        let first = &seen[0];
        assert_eq!(first.method, "POST");
        assert_eq!(first.path, format!("/keys/{KEY_A}//encrypt"));
        assert!(!first.headers.contains_key("authorization"));
        assert!(
            first.body.is_empty(),
            "the token-less probe carries no data"
        );
        let encrypt = &seen[1];
        assert_eq!(encrypt.path, first.path);
        assert_eq!(
            encrypt.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&encrypt.body).unwrap();
        assert_eq!(body["alg"], "RSA-OAEP-256");
        let decrypt = seen.last().unwrap();
        assert_eq!(
            decrypt.path,
            format!("/keys/{KEY_A}/{}/decrypt", versions[1])
        );
        for request in &seen {
            assert!(
                request.query.contains("api-version=7.6"),
                "{}",
                request.query
            );
        }
    }

    #[test]
    fn an_explicit_version_and_the_environment_variable() {
        let server = server();
        let mut sandbox = sandbox(&server);
        let old = server.versions(KEY_A)[0].clone();
        sandbox.env(
            "SOPS_AZURE_KEYVAULT_URLS",
            format!("{}/{old} , {}", server.url(KEY_A), server.url(KEY_B)),
        );
        ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
        let entries = key_entries_of(&sandbox.read("app.yaml"), "azure_kv");
        let keys: Vec<(String, String)> = entries
            .iter()
            .map(|e| (field(e, "name"), field(e, "version")))
            .collect();
        assert_eq!(
            keys,
            [
                (KEY_A.to_string(), old.clone()),
                (KEY_B.to_string(), server.versions(KEY_B)[0].clone())
            ]
        );
        assert!(server
            .open(KEY_A, &old, &field(&entries[0], "enc"))
            .is_some());
        decrypts(&sandbox);
    }

    #[test]
    fn a_file_whose_enc_sops_wrote_opens() {
        // sops writes base64.RawURLEncoding of the RSA-OAEP-256 ciphertext. Build such an `enc`
        // independently of veil (the stand-in's public key, the rsa crate) for the file's data
        // key, put it in the file, and open the file with it alone.
        let server = server();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_B),
                "app.yaml",
            ],
            None,
        ));
        let text = sandbox.read("app.yaml");
        let entry = &key_entries_of(&text, "azure_kv")[0];
        let version = field(entry, "version");
        let veil_enc = field(entry, "enc");
        let data_key = server.open(KEY_B, &version, &veil_enc).unwrap();
        let public = server.public_key(KEY_B, &version);
        let sealed = public
            .encrypt(
                &mut rand::thread_rng(),
                rsa::Oaep::new::<sha2::Sha256>(),
                &data_key,
            )
            .unwrap();
        let sops_enc = URL_SAFE_NO_PAD.encode(sealed);
        assert_ne!(sops_enc, veil_enc);
        let rewritten = text.replace(&veil_enc, &sops_enc);
        assert!(rewritten.contains(&sops_enc));
        decrypts(&elsewhere(&server, &rewritten, Some(TOKEN)));

        // A padded (standard-alphabet) enc is not what sops writes, and does not decode as it.
        let padded = base64::engine::general_purpose::STANDARD.encode([0xfbu8; 256]);
        let broken = text.replace(&veil_enc, &padded);
        let stderr = fails_with(
            elsewhere(&server, &broken, Some(TOKEN)).run(&["decrypt", "app.yaml"], None),
            128,
        );
        assert!(stderr.contains("base64url"), "{stderr}");
    }

    #[test]
    fn a_wrong_key_version_or_a_key_the_token_may_not_use_fails_with_128() {
        let server = server();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        let text = sandbox.read("app.yaml");
        let [old, latest] = [0, 1].map(|i| server.versions(KEY_A)[i].clone());

        // The entry pointed at the other version of the key: RSA-OAEP fails there.
        let wrong = text.replace(&format!("version: {latest}"), &format!("version: {old}"));
        assert_ne!(wrong, text);
        let stderr = fails_with(
            elsewhere(&server, &wrong, Some(TOKEN)).run(&["decrypt", "app.yaml"], None),
            128,
        );
        assert!(
            stderr.contains(&format!("{}/{old}", server.url(KEY_A))),
            "{stderr}"
        );
        assert!(stderr.contains("400"), "{stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");

        // A token that may use only KEY_B: access denied.
        let stderr = fails_with(
            elsewhere(&server, &text, Some(NARROW_TOKEN)).run(&["decrypt", "app.yaml"], None),
            128,
        );
        assert!(stderr.contains(&server.url(KEY_A)), "{stderr}");
        assert!(
            stderr.contains("access denied") && stderr.contains("403"),
            "{stderr}"
        );
        assert!(!stderr.contains(NARROW_TOKEN), "{stderr}");

        // A key the vault does not have, when encrypting: not found, naming it.
        let missing = server.url("missing");
        sandbox.write("new.yaml", PLAIN);
        let output = sandbox.run(&["encrypt", "--azure-kv", &missing, "new.yaml"], None);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("{missing}:")), "{stderr}");
        assert!(
            stderr.contains("not found") && stderr.contains("404"),
            "{stderr}"
        );

        // Not a key URL: refused before any request.
        let before = server.seen().len();
        let output = sandbox.run(
            &[
                "encrypt",
                "--azure-kv",
                &format!("{}/secrets/x", server.vault_url),
                "new.yaml",
            ],
            None,
        );
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("could not parse"));
        assert_eq!(server.seen().len(), before);
    }

    #[test]
    fn bad_or_missing_credentials_fail_with_128_and_say_why() {
        let server = server();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        let text = sandbox.read("app.yaml");

        // A token the vault does not accept: 401 after the challenge.
        let bad = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.not-the-token";
        let stderr = fails_with(
            elsewhere(&server, &text, Some(bad)).run(&["decrypt", "app.yaml"], None),
            128,
        );
        assert!(stderr.contains(&server.url(KEY_A)), "{stderr}");
        assert!(
            stderr.contains("authentication failed") && stderr.contains("401"),
            "{stderr}"
        );
        assert!(!stderr.contains(bad), "{stderr}");

        // No credentials at all. The chain is narrowed to the environment credential, so the
        // test never probes a managed identity endpoint or runs `az`.
        let mut none = elsewhere(&server, &text, None);
        none.env("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential");
        let before = server.seen().len();
        let stderr = fails_with(none.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains(&server.url(KEY_A)), "{stderr}");
        assert!(stderr.contains("no Azure credential worked"), "{stderr}");
        assert!(
            stderr.contains("EnvironmentCredential: not configured"),
            "{stderr}"
        );
        assert!(!stderr.contains("will not be retried"), "{stderr}");
        // Only the token-less challenge request reached the vault.
        assert!(server.seen()[before..]
            .iter()
            .all(|r| !r.headers.contains_key("authorization")));

        // An unknown AZURE_TOKEN_CREDENTIALS value is named.
        let mut odd = elsewhere(&server, &text, None);
        odd.env("AZURE_TOKEN_CREDENTIALS", "mystery");
        let stderr = fails_with(odd.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains("AZURE_TOKEN_CREDENTIALS"), "{stderr}");

        // A CA bundle that is not there is reported by its variable.
        let mut no_ca = elsewhere(&server, &text, Some(TOKEN));
        no_ca.env("VEIL_AZURE_CA_BUNDLE", "/nonexistent/ca.pem");
        let stderr = fails_with(no_ca.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains("VEIL_AZURE_CA_BUNDLE"), "{stderr}");

        // Without the CA the server's certificate is not trusted.
        let mut untrusted = Sandbox::new();
        untrusted.write("app.yaml", &text);
        untrusted.env("VEIL_AZURE_ACCESS_TOKEN", TOKEN);
        let stderr = fails_with(untrusted.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains(&server.url(KEY_A)), "{stderr}");
        assert!(stderr.contains("not trusted"), "{stderr}");
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }

    #[test]
    fn a_service_principal_with_a_secret_gets_its_token_from_the_authority() {
        // EnvironmentCredential: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, with the
        // stand-in as the Entra authority (AZURE_AUTHORITY_HOST), over the same trusted CA.
        const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        const CLIENT: &str = "0c6e8f1a-2b3c-4d5e-8f90-a1b2c3d4e5f6";
        const SECRET: &str = "s3cr3t~client~secret";
        let server = AzureKvServer::builder()
            .tenant(TENANT)
            .service_principal(CLIENT, SECRET)
            .key(KEY_A, 1)
            .start();
        let principal = |secret: &str| {
            let mut sandbox = sandbox_with(&server, None);
            sandbox.env("AZURE_AUTHORITY_HOST", &server.vault_url);
            sandbox.env("AZURE_TENANT_ID", TENANT);
            sandbox.env("AZURE_CLIENT_ID", CLIENT);
            sandbox.env("AZURE_CLIENT_SECRET", secret);
            sandbox
        };
        let sandbox = principal(SECRET);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        decrypts(&sandbox);
        let token_requests = server
            .seen()
            .iter()
            .filter(|r| r.path == format!("/{TENANT}/oauth2/v2.0/token"))
            .count();
        assert!(token_requests >= 1);

        // A wrong secret: the authority's refusal, decisive (the chain stops there), no secret
        // in the message.
        let wrong = principal("not-the-secret");
        wrong.write("app.yaml", sandbox.read("app.yaml"));
        let stderr = fails_with(wrong.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains("EnvironmentCredential"), "{stderr}");
        assert!(stderr.contains("AADSTS7000215"), "{stderr}");
        assert!(!stderr.contains("not-the-secret"), "{stderr}");
        assert!(!stderr.contains("AzureCliCredential"), "{stderr}");
    }

    const CERT_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CERT_CLIENT: &str = "5d2e3c4b-1a2b-4c3d-9e8f-0a1b2c3d4e5f";

    /// A sandbox for the certificate principal at `server`: the authority is the stand-in,
    /// `content` is written to `file` and named by AZURE_CLIENT_CERTIFICATE_PATH; no secret,
    /// no static token.
    fn certificate_sandbox(server: &AzureKvServer, file: &str, content: &[u8]) -> Sandbox {
        let mut sandbox = sandbox_with(server, None);
        let path = sandbox.write(file, content);
        sandbox.env("AZURE_AUTHORITY_HOST", &server.vault_url);
        sandbox.env("AZURE_TENANT_ID", CERT_TENANT);
        sandbox.env("AZURE_CLIENT_ID", CERT_CLIENT);
        sandbox.env("AZURE_CLIENT_CERTIFICATE_PATH", path.to_string_lossy());
        sandbox
    }

    /// The form fields of the token requests the stand-in received, in order.
    fn token_forms(server: &AzureKvServer) -> Vec<std::collections::HashMap<String, String>> {
        server
            .seen()
            .iter()
            .filter(|r| r.path == format!("/{CERT_TENANT}/oauth2/v2.0/token"))
            .map(|r| {
                String::from_utf8_lossy(&r.body)
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.replace("%3A", ":").replace("%2F", "/")))
                    .collect()
            })
            .collect()
    }

    /// A JWT's header and claims.
    fn jwt_parts(jwt: &str) -> (serde_json::Value, serde_json::Value) {
        let part = |i: usize| -> serde_json::Value {
            let text = jwt.split('.').nth(i).expect("three parts");
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
        };
        (part(0), part(1))
    }

    #[test]
    fn a_service_principal_with_a_certificate_signs_its_own_assertion() {
        use super::azure_kv_server::ClientCert;
        use base64::engine::general_purpose::STANDARD;
        let cert = ClientCert::new("veil-sp");
        let server = AzureKvServer::builder()
            .tenant(CERT_TENANT)
            .certificate_principal(CERT_CLIENT, &cert)
            .key(KEY_A, 1)
            .start();

        // PEM: the certificate and its PKCS#8 key. No secret, no static token.
        let pkcs8 = format!("{}{}", cert.pem, cert.pkcs8_pem());
        let sandbox = certificate_sandbox(&server, "sp.pem", pkcs8.as_bytes());
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        decrypts(&sandbox);
        let text = sandbox.read("app.yaml");

        // What reached the token endpoint: the client-credentials grant with a JWT assertion.
        let forms = token_forms(&server);
        assert!(!forms.is_empty());
        for form in &forms {
            assert_eq!(form["grant_type"], "client_credentials");
            assert_eq!(form["client_id"], CERT_CLIENT);
            assert_eq!(form["scope"], "https://vault.azure.net/.default");
            assert_eq!(
                form["client_assertion_type"],
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            );
            assert!(!form.contains_key("client_secret"));
        }
        let (header, claims) = jwt_parts(&forms[0]["client_assertion"]);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["x5t"], cert.x5t().as_str());
        assert!(header.get("x5c").is_none());
        assert_eq!(
            claims["aud"],
            format!("{}/{CERT_TENANT}/oauth2/v2.0/token", server.vault_url)
        );
        assert_eq!(claims["iss"], CERT_CLIENT);
        assert_eq!(claims["sub"], CERT_CLIENT);
        let (nbf, exp) = (
            claims["nbf"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!(exp > nbf && exp - nbf <= 600, "{claims}");

        // The stand-in does verify: a flipped signature bit, another client.
        let jwt = forms[0]["client_assertion"].as_str();
        assert_eq!(server.check_assertion(CERT_CLIENT, jwt), Ok(()));
        let mut parts: Vec<String> = jwt.split('.').map(String::from).collect();
        let mut signature = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
        signature[17] ^= 1;
        parts[2] = URL_SAFE_NO_PAD.encode(signature);
        let err = server
            .check_assertion(CERT_CLIENT, &parts.join("."))
            .unwrap_err();
        assert!(
            err.starts_with("401 AADSTS700027") && err.contains("signature value"),
            "{err}"
        );
        let err = server.check_assertion("someone-else", jwt).unwrap_err();
        assert!(err.contains("AADSTS700016"), "{err}");

        // A PKCS#1 key after a chain (the key's certificate second), with the chain sent.
        let chain = format!("{}{}{}", server.ca_pem, cert.pem, cert.pkcs1_pem());
        let mut with_chain = certificate_sandbox(&server, "chain.pem", chain.as_bytes());
        with_chain.env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true");
        with_chain.write("app.yaml", &text);
        decrypts(&with_chain);
        let forms = token_forms(&server);
        let (header, _) = jwt_parts(&forms.last().unwrap()["client_assertion"]);
        let x5c: Vec<&str> = header["x5c"]
            .as_array()
            .expect("x5c")
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(x5c.len(), 2);
        assert_eq!(x5c[0], STANDARD.encode(&cert.der));
        assert_eq!(header["x5t"], cert.x5t().as_str());

        // An encrypted PKCS#8 key opened with AZURE_CLIENT_CERTIFICATE_PASSWORD.
        let password = "correct horse 42";
        let encrypted = format!("{}{}", cert.pem, cert.encrypted_pkcs8_pem(password));
        let mut locked = certificate_sandbox(&server, "locked.pem", encrypted.as_bytes());
        locked.env("AZURE_CLIENT_CERTIFICATE_PASSWORD", password);
        locked.write("app.yaml", &text);
        decrypts(&locked);

        // With both a secret and a certificate the secret is used, as the Azure SDKs do: a
        // wrong secret fails although the certificate would have worked.
        let mut both = certificate_sandbox(&server, "sp.pem", pkcs8.as_bytes());
        both.env("AZURE_CLIENT_SECRET", "not-a-registered-secret");
        both.write("app.yaml", &text);
        let before = token_forms(&server).len();
        let stderr = fails_with(both.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains("AADSTS7000215"), "{stderr}");
        assert!(!stderr.contains("not-a-registered-secret"), "{stderr}");
        let forms = token_forms(&server);
        assert!(forms[before..]
            .iter()
            .all(|f| f.contains_key("client_secret") && !f.contains_key("client_assertion")));
    }

    #[test]
    fn an_unregistered_certificate_or_an_unusable_file_fails_with_128_and_says_why() {
        use super::azure_kv_server::ClientCert;
        let cert = ClientCert::new("registered");
        let server = AzureKvServer::builder()
            .tenant(CERT_TENANT)
            .token(TOKEN)
            .certificate_principal(CERT_CLIENT, &cert)
            .key(KEY_A, 1)
            .start();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        let text = sandbox.read("app.yaml");
        let fail = |file: &str, content: &[u8], vars: &[(&str, &str)]| {
            let mut other = certificate_sandbox(&server, file, content);
            other.env("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential");
            for (name, value) in vars {
                other.env(name, *value);
            }
            other.write("app.yaml", &text);
            let stderr = fails_with(other.run(&["decrypt", "app.yaml"], None), 128);
            assert!(stderr.contains(&server.url(KEY_A)), "{stderr}");
            assert!(stderr.contains("EnvironmentCredential"), "{stderr}");
            assert!(stderr.contains(file), "{file}: {stderr}");
            assert!(!stderr.contains("PRIVATE KEY-----"), "{stderr}");
            stderr
        };

        // A certificate the application does not have: Entra's AADSTS700027, decisive (no
        // other credential tried), and neither the key nor the assertion in the message.
        let stranger = ClientCert::other_than(&cert, "stranger");
        let stranger_key = stranger.pkcs8_pem();
        let unregistered = certificate_sandbox(
            &server,
            "stranger.pem",
            format!("{}{stranger_key}", stranger.pem).as_bytes(),
        );
        unregistered.write("app.yaml", &text);
        let stderr = fails_with(unregistered.run(&["decrypt", "app.yaml"], None), 128);
        assert!(stderr.contains("EnvironmentCredential"), "{stderr}");
        assert!(
            stderr.contains("client certificate") && stderr.contains("stranger.pem"),
            "{stderr}"
        );
        assert!(stderr.contains("AADSTS700027"), "{stderr}");
        assert!(!stderr.contains("AzureCliCredential"), "{stderr}");
        for line in stranger_key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!stderr.contains(line), "key material in: {stderr}");
        }
        let forms = token_forms(&server);
        let assertion = &forms.last().unwrap()["client_assertion"];
        assert!(!stderr.contains(assertion.as_str()), "{stderr}");
        assert!(
            !stderr.contains(assertion.split('.').nth(2).unwrap()),
            "{stderr}"
        );

        // A file that is not there.
        let mut missing = certificate_sandbox(&server, "unused.pem", b"");
        missing.env("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential");
        missing.env("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/veil/sp.pem");
        missing.write("app.yaml", &text);
        let stderr = fails_with(missing.run(&["decrypt", "app.yaml"], None), 128);
        assert!(
            stderr.contains("/nonexistent/veil/sp.pem") && stderr.contains("cannot read"),
            "{stderr}"
        );

        // A certificate without its private key.
        let stderr = fail("cert-only.pem", cert.pem.as_bytes(), &[]);
        assert!(stderr.contains("no private key"), "{stderr}");

        // PKCS#12: refused with the conversion command.
        let stderr = fail("sp.pfx", &[0x30, 0x82, 0x0a, 0x00, 0x02, 0x01, 0x03], &[]);
        assert!(stderr.contains("openssl pkcs12"), "{stderr}");

        // An encrypted key: without the password, and with a wrong one.
        let encrypted = format!("{}{}", cert.pem, cert.encrypted_pkcs8_pem("right-pw"));
        let stderr = fail("locked.pem", encrypted.as_bytes(), &[]);
        assert!(
            stderr.contains("AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            "{stderr}"
        );
        let stderr = fail(
            "locked.pem",
            encrypted.as_bytes(),
            &[("AZURE_CLIENT_CERTIFICATE_PASSWORD", "wrong-pw-7")],
        );
        assert!(
            stderr.contains("wrong AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            "{stderr}"
        );
        assert!(!stderr.contains("wrong-pw-7"), "{stderr}");

        // The key of another certificate.
        let mismatched = format!("{}{stranger_key}", cert.pem);
        let stderr = fail("mismatch.pem", mismatched.as_bytes(), &[]);
        assert!(stderr.contains("belongs to its private key"), "{stderr}");
    }

    #[test]
    fn an_unreachable_vault_fails_with_128_and_a_clear_message() {
        let server = server();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        // A port nothing listens on.
        let unused = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let away = format!("https://127.0.0.1:{unused}");
        let text = sandbox.read("app.yaml").replace(&server.vault_url, &away);
        let stderr = fails_with(
            elsewhere(&server, &text, Some(TOKEN)).run(&["decrypt", "app.yaml"], None),
            128,
        );
        assert!(stderr.contains(&format!("{away}/keys/{KEY_A}")), "{stderr}");
        assert!(
            stderr.contains("Azure Key Vault is unreachable"),
            "{stderr}"
        );
        assert!(!stderr.contains(TOKEN), "{stderr}");
    }

    #[test]
    fn creation_rules_with_azure_keyvault_flat_and_in_key_groups() {
        let server = server();
        let sandbox = sandbox(&server);
        // Flat: a URL string.
        sandbox.write(
            ".sops.yaml",
            format!(
                "creation_rules:\n  - path_regex: app\\.yaml$\n    azure_keyvault: {}\n",
                server.url(KEY_B)
            ),
        );
        ok(sandbox.run(&["encrypt", "-i", "app.yaml"], None));
        let entries = key_entries_of(&sandbox.read("app.yaml"), "azure_kv");
        assert_eq!(entries.len(), 1);
        assert_eq!(field(&entries[0], "name"), KEY_B);
        decrypts(&sandbox);
        // updatekeys: the rule's version-less key is the file's entry for its latest version.
        let output = sandbox.run(&["updatekeys", "-y", "app.yaml"], None);
        assert!(output.status.success());
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("already up to date"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );

        // key_groups: sops' {vaultUrl, key, version} form (version optional), two groups.
        let old = server.versions(KEY_A)[0].clone();
        sandbox.write("other.yaml", PLAIN);
        sandbox.write(
            ".sops.yaml",
            format!(
                "creation_rules:\n  - path_regex: other\\.yaml$\n    key_groups:\n      - azure_keyvault:\n          - vaultUrl: {vault}\n            key: {KEY_A}\n            version: {old}\n      - azure_keyvault:\n          - vaultUrl: {vault}/\n            key: {KEY_B}\n",
                vault = server.vault_url
            ),
        );
        ok(sandbox.run(&["encrypt", "-i", "other.yaml"], None));
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&sandbox.read("other.yaml")).unwrap();
        let groups = doc["sops"]["key_groups"].as_sequence().expect("key_groups");
        assert_eq!(groups.len(), 2);
        let group_key = |i: usize| {
            let entry = &groups[i]["azure_kv"][0];
            (
                entry["vault_url"].as_str().unwrap().to_string(),
                entry["name"].as_str().unwrap().to_string(),
                entry["version"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(group_key(0), (server.vault_url.clone(), KEY_A.into(), old));
        assert_eq!(
            group_key(1),
            (
                server.vault_url.clone(),
                KEY_B.into(),
                server.versions(KEY_B)[0].clone()
            )
        );
        let out = ok(sandbox.run(&["decrypt", "other.yaml"], None));
        assert_eq!(String::from_utf8(out).unwrap(), PLAIN);
    }

    #[test]
    fn rotate_adds_and_removes_azure_keys_and_groups_add_takes_them() {
        let server = server();
        let sandbox = sandbox(&server);
        ok(sandbox.run(
            &[
                "encrypt",
                "-i",
                "--azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        ok(sandbox.run(
            &[
                "rotate",
                "-i",
                "--add-azure-kv",
                &server.url(KEY_B),
                "app.yaml",
            ],
            None,
        ));
        let names: Vec<String> = key_entries_of(&sandbox.read("app.yaml"), "azure_kv")
            .iter()
            .map(|e| field(e, "name"))
            .collect();
        assert_eq!(names, [KEY_A, KEY_B]);
        decrypts(&sandbox);

        // Without a version, --rm-azure-kv removes whichever version the file holds.
        ok(sandbox.run(
            &[
                "rotate",
                "-i",
                "--rm-azure-kv",
                &server.url(KEY_A),
                "app.yaml",
            ],
            None,
        ));
        let entries = key_entries_of(&sandbox.read("app.yaml"), "azure_kv");
        assert_eq!(entries.len(), 1);
        assert_eq!(field(&entries[0], "name"), KEY_B);
        // Only KEY_B can open it now: the narrow token suffices.
        let text = sandbox.read("app.yaml");
        decrypts(&elsewhere(&server, &text, Some(NARROW_TOKEN)));

        ok(sandbox.run(
            &[
                "groups",
                "add",
                "-i",
                "-f",
                "app.yaml",
                "--azure-kv",
                &server.url(KEY_A),
            ],
            None,
        ));
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&sandbox.read("app.yaml")).unwrap();
        let groups = doc["sops"]["key_groups"].as_sequence().expect("key_groups");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1]["azure_kv"][0]["name"].as_str(), Some(KEY_A));
        decrypts(&sandbox);
    }
}
