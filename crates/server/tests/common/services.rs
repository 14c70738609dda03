//! Real PostgreSQL and S3 servers on loopback for the scale-out tests: a throwaway PostgreSQL
//! cluster (`initdb` into a temp folder; run as `nobody` when the tests run as root, which
//! PostgreSQL refuses) and `s3s-fs`, an S3 server over a folder that checks signatures and
//! the expiry of presigned links. `scripts/test.sh` installs both. Missing, they skip the test
//! (a failure under `CI=true`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::process::free_port;

/// Says why a service is missing: a failure under `CI=true`, else a skip.
fn missing(msg: &str) -> Option<std::convert::Infallible> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; under CI=true the scale-out tests must run");
    }
    eprintln!("skipped: {msg}");
    None
}

/// The folder of PostgreSQL's server programs.
fn postgres_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of `nobody`, which runs PostgreSQL when the tests run as root.
const NOBODY: u32 = 65534;

/// A throwaway PostgreSQL server; stopped (and its folder removed) when dropped.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// With TLS: the CA that signed the server's certificate (for 127.0.0.1).
    pub certificate: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// A PostgreSQL program as the user that owns the cluster.
    fn command(&self, program: &str) -> Command {
        command_as_owner(&self.bin.join(program))
    }

    /// Starts a fresh cluster, or says why it cannot.
    pub fn start() -> Option<Self> {
        Self::start_with(false)
    }

    /// Starts a fresh cluster that also takes TLS connections (a self-signed certificate for
    /// 127.0.0.1 made with `openssl`), or says why it cannot.
    pub fn start_with_tls() -> Option<Self> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            missing("PostgreSQL not found (scripts/test.sh installs it; or set PG_BIN)")?;
            unreachable!()
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            for path in [dir.path(), data.as_path()] {
                std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
            }
        }
        let certificate = tls.then(|| make_certificates(dir.path()));
        let pg = Postgres {
            bin,
            data,
            port: free_port(),
            certificate,
            _dir: dir,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb failed: {out:?}");
        pg.pg_ctl("start");
        Some(pg)
    }

    fn pg_ctl(&self, action: &str) {
        let log = self.data.join("server.log");
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        if let Some(ca) = &self.certificate {
            options += &format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                ca.with_file_name("server.crt").display(),
                ca.with_file_name("server.key").display()
            );
        }
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-w", "-m", "fast", action])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {action} failed: {out:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Restarts the server (every connection is dropped).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// The connection string.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A client for the test's own queries.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it (`openssl`) in `dir`:
/// `ca.crt`, `server.crt`, `server.key` (readable by PostgreSQL's user only); returns the CA.
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs (scripts/test.sh installs it)");
        assert!(out.status.success(), "openssl {args:?} failed: {out:?}");
    };
    let key = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &key[..],
            &["-days", "1", "-subj", "/CN=test CA"],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &key[..],
            &["-subj", "/CN=127.0.0.1"],
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    let key = dir.join("server.key");
    // PostgreSQL takes a key only its owner can read.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if is_root() {
        for file in [dir.join("server.crt"), key] {
            std::os::unix::fs::chown(file, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    dir.join("ca.crt")
}

/// `program`, run as `nobody` when the tests run as root.
fn command_as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={NOBODY}"))
            .arg(format!("--regid={NOBODY}"))
            .arg("--clear-groups")
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The credentials the S3 server accepts.
pub const S3_ACCESS_KEY: &str = "selfdiffusion-test";
/// The secret of [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "selfdiffusion-test-secret";
/// The bucket the tests use.
pub const BUCKET: &str = "images";

fn s3s_binary() -> Option<PathBuf> {
    [
        std::env::var_os("S3S_FS").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// An S3 server over a temp folder; killed when dropped. It can be stopped and started again
/// on the same port and folder.
pub struct S3 {
    bin: PathBuf,
    /// Its folder: a bucket per subfolder.
    pub root: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl S3 {
    /// Starts it with the bucket [`BUCKET`], or says why it cannot.
    pub async fn start() -> Option<Self> {
        let Some(bin) = s3s_binary() else {
            missing("s3s-fs not found (scripts/test.sh installs it; or set S3S_FS)")?;
            unreachable!()
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let mut s3 = S3 {
            bin,
            root,
            port: free_port(),
            child: None,
            _dir: dir,
        };
        s3.resume().await;
        Some(s3)
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The same server under another name, as clients outside a cluster would reach it.
    pub fn public_endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// Stops it: requests fail to connect.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, and waits until it answers.
    pub async fn resume(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(self.endpoint()).await.is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The keys stored under `prefix` in [`BUCKET`] (as files: what a listing shows).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let base = self.root.join(BUCKET);
        let mut keys = Vec::new();
        walk(&base.join(prefix), &base, &mut keys);
        keys.sort();
        keys
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}
