//! A real S3 API server for tests and measurements: moto's server
//! (`pip install 'moto[server]'`), started on a loopback port the OS picks
//! and stopped when dropped.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The Python that runs moto: starts it on port 0, creates the buckets
/// named on the command line (a leading `+`: readable without
/// credentials, for plain HTTP clients), prints the port, and serves until
/// its standard input closes.
const SCRIPT: &str = r#"
import json
import logging
import sys
import boto3
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port = server.get_host_and_port()[1]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
for bucket in sys.argv[1:]:
    public = bucket.startswith("+")
    bucket = bucket.lstrip("+")
    s3.create_bucket(Bucket=bucket)
    if public:
        statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                     "Resource": f"arn:aws:s3:::{bucket}/*"}
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [statement]}))
print(port, flush=True)
sys.stdin.read()
server.stop()
"#;

/// A running moto S3 server. Dropping it stops the server.
#[derive(Debug)]
pub struct Moto {
    port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Moto {
    /// Starts moto with `buckets` created; a name with a leading `+` is a
    /// bucket anyone may read (as a plain HTTP origin would be). Fails with a message that says
    /// how to install moto when `python3 -c 'import moto'` cannot.
    pub fn start(buckets: &[&str]) -> Result<Self, String> {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .args(buckets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        let read = BufReader::new(stdout).read_line(&mut line);
        let port = match (read, line.trim().parse()) {
            (Ok(_), Ok(port)) => port,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("moto's S3 server did not start: pip install 'moto[server]'".into());
            }
        };
        Ok(Self { port, child, stdin })
    }

    /// The server's URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The options that point an S3 source at this server.
    pub fn options(&self) -> Vec<(&'static str, String)> {
        options_for(&self.endpoint())
    }
}

/// The options that point an S3 source at moto listening on `endpoint`
/// (moto takes any credentials).
pub fn options_for(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_string()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
    ]
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        // Closing stdin asks the script to stop; a kill makes sure.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// A client of `bucket` on this server, for putting and deleting
    /// objects from the test itself (on the caller's tokio runtime).
    pub fn store(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        let mut b = object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket);
        for (k, v) in self.options() {
            b = b.with_config(k.parse().expect("known key"), v);
        }
        std::sync::Arc::new(b.build().expect("moto store builds"))
    }
}
