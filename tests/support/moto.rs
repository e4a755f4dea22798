//! A real `moto_server` (PyPI `moto[server]`) as the AWS KMS and STS endpoint of a test binary:
//! started on 127.0.0.1 and a free port, shared by the tests running at the same time, killed
//! when the last of them is done. Keys are created through the KMS API with the AWS SDK.
//! `moto()` prints `SKIPPED:` and returns `None` when `moto_server` is not installed.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::common::{have, Sandbox};

/// A `moto_server` child process, killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Option<Moto> {
        if !have("moto_server") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        // Waiting for the server to come up, not a measure of veil.
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// Creates a symmetric KMS key and returns its ARN.
    pub fn create_key(&self) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(aws_sdk_kms::config::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .build();
            let client = aws_sdk_kms::Client::from_conf(config);
            let out = client
                .create_key()
                .description("veil test")
                .send()
                .await
                .expect("CreateKey");
            out.key_metadata()
                .and_then(|m| m.arn())
                .expect("key ARN")
                .to_string()
        })
    }

    /// Gives `sandbox` test credentials for this server, and no IMDS probing.
    pub fn credentials(&self, sandbox: &mut Sandbox) {
        sandbox
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.endpoint.clone())
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }
}

/// One server for the tests running at the same time (a new one if all were done).
pub fn moto() -> Option<Arc<Moto>> {
    static SHARED: Mutex<Weak<Moto>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(moto) = shared.upgrade() {
        return Some(moto);
    }
    let moto = Arc::new(Moto::start()?);
    *shared = Arc::downgrade(&moto);
    Some(moto)
}
