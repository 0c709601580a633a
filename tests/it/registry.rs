//! A real OCI registry on 127.0.0.1 for the tests: Debian's `docker-registry` (the CNCF
//! distribution registry), filesystem storage in a temp dir, on a port the kernel picks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Where it keeps what it stores.
    data: PathBuf,
    /// Its log so far, a line per request.
    log: Arc<Mutex<Vec<String>>>,
}

impl Registry {
    /// Start a registry storing under `dir`, or `None` when `docker-registry` is not
    /// installed (outside CI; under `CI=true` that is a failure, see `require_tool`).
    pub fn start(dir: &Path) -> Option<Registry> {
        Registry::start_with_users(dir, &[])
    }

    /// A registry that lets in only `users` (name, password) with HTTP basic auth; open to
    /// all when there are none.
    pub fn start_with_users(dir: &Path, users: &[(&str, &str)]) -> Option<Registry> {
        let bin = crate::common::require_tool("docker-registry")?;
        let config = dir.join("registry.yml");
        let mut auth = String::new();
        if !users.is_empty() {
            let htpasswd = dir.join("htpasswd");
            let lines: Vec<String> = users
                .iter()
                .map(|(u, p)| format!("{u}:{}", bcrypt::hash(p, 4).unwrap()))
                .collect();
            std::fs::write(&htpasswd, lines.join("\n") + "\n").unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: stagegate-tests\n    path: {}\n",
                htpasswd.display()
            );
        }
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: stagegate-tests\n{auth}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry starts");
        // It says where it listens once it does: "listening on 127.0.0.1:PORT".
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!("docker-registry exited before listening");
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split(['"', ' ']).next().unwrap().to_string();
            }
        };
        // Keep draining its log so it never blocks on a full pipe, and keep it for `pulls`.
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        });
        Some(Registry {
            child,
            addr,
            data: dir.join("data"),
            log,
        })
    }

    /// The store URL of repository `repo` on this registry.
    pub fn store(&self, repo: &str) -> String {
        format!("oci://{}/{repo}", self.addr)
    }
}

impl Registry {
    /// How many times the blob `digest` (`sha256:…`) was downloaded so far. The registry
    /// logs a request once it has answered it, so a download a client just finished may
    /// take a moment to show: this waits up to a second for at least `expected`.
    pub fn pulls(&self, digest: &str, expected: usize) -> usize {
        let uri = format!("/blobs/{digest}\"");
        let count = || {
            self.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("http.request.method=GET") && l.contains(&uri))
                .count()
        };
        for _ in 0..20 {
            if count() >= expected {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        count()
    }

    /// The tags of repository `repo`, read from the registry's storage.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let dir = self
            .data
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags");
        let mut tags: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        tags.sort();
        tags
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
