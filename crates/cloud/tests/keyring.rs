//! The refresh token in a real Secret Service: the test starts a private D-Bus session bus and
//! gnome-keyring-daemon on it (Linux; `scripts/test.sh` installs both), then saves, restores
//! and forgets a session through the OS keyring.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selfdiffusion_cloud::{OsKeyring, RefreshStore, SecretVault, Tokens};

/// A session bus and a keyring daemon, stopped when dropped.
struct SecretService {
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn secret_service() -> Option<SecretService> {
    if !installed("dbus-daemon") || !installed("gnome-keyring-daemon") {
        let msg = "dbus-daemon or gnome-keyring-daemon not found (scripts/test.sh installs them)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}; under CI=true the keyring test must run");
        }
        eprintln!("skipped: {msg}");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut bus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut address = String::new();
    BufReader::new(bus.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim().to_owned();
    let mut service = SecretService {
        children: vec![bus],
        _dir: dir,
    };
    // This test binary runs alone (one test), so pointing it at the private bus is safe.
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);
    let home = service._dir.path();
    let mut daemon = Command::new("gnome-keyring-daemon")
        .args(["--foreground", "--unlock", "--components=secrets"])
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_RUNTIME_DIR", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The login keyring's password, then end of input.
    daemon
        .stdin
        .take()
        .unwrap()
        .write_all(b"test-password")
        .unwrap();
    service.children.push(daemon);
    // Touching the Secret Service before the daemon has made the login keyring leaves it without
    // a default collection: wait for the keyring file first.
    let started = Instant::now();
    let login = home.join("data/keyrings/login.keyring");
    while !login.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gnome-keyring-daemon made no login keyring"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    while let Err(e) = OsKeyring.set("probe", "ready") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the Secret Service did not come up on {address}: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    OsKeyring.delete("probe").unwrap();
    Some(service)
}

#[test]
fn the_session_lives_in_the_os_keyring() {
    let Some(_service) = secret_service() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = RefreshStore::new(dir.path().join("session.json"));
    let tokens = Tokens::new(
        "ada",
        "id",
        "access",
        "refresh-in-keyring",
        Duration::from_secs(3600),
    );
    store.save(&tokens).unwrap();
    let file = std::fs::read_to_string(store.path()).unwrap();
    assert!(
        !file.contains("refresh-in-keyring"),
        "the token went to the keyring, not the file: {file}"
    );
    assert_eq!(
        store.load(),
        Some(("ada".into(), "refresh-in-keyring".into()))
    );
    // Another store object (the next run of the app) finds it too.
    let again = RefreshStore::new(store.path());
    assert_eq!(again.load().unwrap().1, "refresh-in-keyring");

    store.clear().unwrap();
    assert_eq!(store.load(), None);
    let account = format!("ada@{}", store.path().display());
    assert_eq!(
        OsKeyring.get(&account).unwrap(),
        None,
        "sign-out removes the entry"
    );
}
