//! The server binary as a child process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary running with a config file; killed (SIGKILL) when dropped.
pub struct Server(Child);

impl Server {
    /// Starts `selfdiffusion-server [mode] --config config` with `env`, and waits until `base`
    /// answers `/health`.
    pub async fn start(
        mode: Option<&str>,
        config: &Path,
        base: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_selfdiffusion-server"));
        command.args(mode);
        command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        // Killed and waited for on drop, also when it never comes up.
        let mut server = Server(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = reqwest::get(format!("{base}/health"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return server;
            }
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("the server stopped at start: {status}");
            }
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills it (SIGKILL: no clean-up of any kind) and waits for it.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
