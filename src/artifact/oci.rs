//! An OCI registry as the shared store: artifacts and logs as OCI artifacts.
//!
//! `oci://HOST[:PORT]/REPO` names a repository of any OCI distribution registry (ghcr.io on
//! GitHub). Every file is a blob addressed by its sha256 digest, kept alive by a small OCI
//! artifact manifest tagged `sg-<hex>` whose one layer is the blob, and whose
//! annotations say what it is (item, version, lock; or the job a log belongs to).
//!
//! Stores written before 0.2 tagged that manifest `sha256-<hex>`: the very tag the OCI
//! referrers tag schema reserves for the index of a digest's referrers. Such a tag is still
//! read ([`Registry::artifact_manifest`] falls back to it), and is re-tagged `sg-<hex>` the
//! first time an attestation is attached to the artifact, so old stores keep working and
//! move over as they are used.
//!
//! Attestations (a promotion's signed verification summary) are attached to an artifact's
//! manifest as OCI 1.1 referrers ([`Registry::push_referrer`]): a manifest whose `subject`
//! is the artifact's, found through the registry's referrers API where it has one, and
//! through the referrers tag schema (an image index tagged `sha256-<manifest hex>`) where
//! it does not.
//!
//! Transfers stream: a push is one `PUT` whose body is read from the file as it goes, a pull
//! writes the response into a file as it arrives and checks the digest; neither holds the
//! content in memory. Plain http is used for `127.0.0.1`, `localhost` and `[::1]`, and for
//! any host written `oci+http://`; everything else is https.
//!
//! Credentials come from the environment (never from the state repository):
//! `STAGEGATE_OCI_TOKEN` (a bearer token), or `STAGEGATE_OCI_USERNAME` and
//! `STAGEGATE_OCI_PASSWORD`, or for ghcr.io `GITHUB_TOKEN` (with `GITHUB_ACTOR`); none means
//! anonymous.
//!
//! The client is async; the store's callers are not. Each `Registry` owns a small runtime
//! of its own and waits on it from whichever thread calls, so the store works the same from
//! the CLI and from inside the job runner's runtime.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::keys::Digest;

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("artifact store {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("{what} {url}: {source}")]
    Registry {
        what: String,
        url: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the registry client: {0}")]
    Runtime(std::io::Error),
}

/// The media type of the (empty) config of every stagegate artifact.
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// `{}`, the OCI spec's empty descriptor content.
const EMPTY_DATA: &[u8] = b"{}";
/// `artifactType` of the manifests, and the layer media type, of each kind of file.
pub const ARTIFACT_TYPE: &str = "application/vnd.stagegate.artifact.v1";
pub const LOG_TYPE: &str = "application/vnd.stagegate.log.v1";
/// Annotation keys.
pub const ANNOTATION_PREFIX: &str = "dev.stagegate";

/// The tag of the manifest that keeps the blob `<hex>`.
pub fn tag_of(hex: &str) -> String {
    format!("sg-{hex}")
}
/// The tag stores written before 0.2 used (the referrers tag schema's own form).
fn legacy_tag_of(hex: &str) -> String {
    format!("sha256-{hex}")
}

/// An attestation attached to an artifact: its content and the annotations of the
/// referrer manifest that carries it.
#[derive(Debug, Clone)]
pub struct Attached {
    /// `oci://HOST/REPO@sha256:…` of the referrer manifest.
    pub location: String,
    pub annotations: BTreeMap<String, String>,
    pub content: Vec<u8>,
}

/// How much of a file one read hands to the uploader.
const READ_CHUNK: usize = 1 << 20;

/// One repository of an OCI registry.
pub struct Registry {
    /// `host[:port]`
    pub host: String,
    /// The repository path inside the registry, e.g. `owner/stagegate-artifacts`.
    pub repo: String,
    plain_http: bool,
    client: Arc<Client>,
    auth: RegistryAuth,
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        // The store may be dropped inside another runtime (the job runner's), where a
        // blocking shutdown is not allowed.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Whether `url` names a registry (`oci://` or `oci+http://`).
pub fn is_oci(url: &str) -> bool {
    url.starts_with("oci://") || url.starts_with("oci+http://")
}

impl Registry {
    /// The registry named by `url` (`oci://HOST[:PORT]/REPO` or `oci+http://…`).
    pub fn open(url: &str) -> Result<Registry, OciError> {
        let Address {
            host,
            repo,
            forced_http,
        } = parse_url(url).map_err(|why| OciError::BadUrl {
            url: url.to_string(),
            why,
        })?;
        let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let plain_http = forced_http || matches!(hostname, "127.0.0.1" | "localhost" | "[::1]");
        // oci-client is built without a TLS provider of its own (see Cargo.toml); use ring,
        // the one octocrab uses. Installing twice is harmless: the first one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // One streamed PUT per blob: the fastest way through, and a body read from the
            // file as it is sent.
            use_monolithic_push: true,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            user_agent: concat!("stagegate/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stagegate-oci")
            .enable_all()
            .build()
            .map_err(OciError::Runtime)?;
        Ok(Registry {
            auth: auth_from_env(hostname),
            host,
            repo,
            plain_http: forced_http,
            client: Arc::new(Client::new(config)),
            rt: Some(rt),
        })
    }

    /// The store's URL, as written in `stagegate.yaml`.
    pub fn url(&self) -> String {
        let scheme = if self.plain_http { "oci+http" } else { "oci" };
        format!("{scheme}://{}/{}", self.host, self.repo)
    }

    /// Where the blob `digest` lives: `oci://HOST/REPO@sha256:…`.
    pub fn location(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.url())
    }

    fn reference(&self, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), self.repo.clone(), tag.to_string())
    }

    /// Run `f` on the registry's own runtime and wait for it, from any thread.
    fn block<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        let rt = self
            .rt
            .as_ref()
            .expect("runtime lives as long as the registry");
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the registry runtime finished the task")
    }

    fn failed(
        &self,
        what: &str,
    ) -> impl Fn(oci_client::errors::OciDistributionError) -> OciError + use<> {
        let (what, url) = (what.to_string(), self.url());
        move |source| OciError::Registry {
            what: what.clone(),
            url: url.clone(),
            source,
        }
    }

    /// Upload `path` (whose digest and size the caller computed) unless the registry has
    /// it, and tag a manifest for it `sg-<hex>` with `annotations`.
    pub fn push_file(
        &self,
        path: &Path,
        digest: &Digest,
        size: u64,
        artifact_type: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), OciError> {
        let hex = digest.hex().to_string();
        let image = self.reference(&tag_of(&hex));
        let (client, auth) = (self.client.clone(), self.auth.clone());
        let file = path.to_path_buf();
        let digest = digest.to_string();
        let artifact_type = artifact_type.to_string();
        let failed = self.failed("pushing to");
        self.block(async move {
            client
                .auth(&image, &auth, RegistryOperation::Push)
                .await
                .map_err(&failed)?;
            if !client.blob_exists(&image, &digest).await.map_err(&failed)? {
                let f = tokio::fs::File::open(&file)
                    .await
                    .map_err(|source| OciError::Io {
                        what: format!("opening {}", file.display()),
                        source,
                    })?;
                client
                    .push_blob_stream(&image, read_stream(f), &digest, Some(size))
                    .await
                    .map_err(&failed)?;
            }
            let empty = sha256_of(EMPTY_DATA);
            if !client.blob_exists(&image, &empty).await.map_err(&failed)? {
                client
                    .push_blob(&image, EMPTY_DATA, &empty)
                    .await
                    .map_err(&failed)?;
            }
            // The digest, whatever the file is called here: the blob is the same bytes
            // whether it was pushed from the cache or from a user's file.
            let title = hex.clone();
            let manifest = OciImageManifest {
                schema_version: 2,
                media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
                config: OciDescriptor {
                    media_type: EMPTY_CONFIG.to_string(),
                    digest: empty,
                    size: EMPTY_DATA.len() as i64,
                    ..Default::default()
                },
                layers: vec![OciDescriptor {
                    media_type: artifact_type.clone(),
                    digest: digest.clone(),
                    size: size as i64,
                    annotations: Some(BTreeMap::from([(
                        "org.opencontainers.image.title".to_string(),
                        title,
                    )])),
                    ..Default::default()
                }],
                subject: None,
                artifact_type: Some(artifact_type),
                annotations: (!annotations.is_empty()).then_some(annotations),
            };
            // Plain JSON, not the client's canonical form, which leaves control characters
            // (a lock file's newlines) unescaped where registries expect strict JSON.
            let body =
                serde_json::to_vec(&OciManifest::Image(manifest)).expect("a manifest serializes");
            client
                .push_manifest_raw(&image, body, reqwest_header(OCI_IMAGE_MEDIA_TYPE))
                .await
                .map_err(&failed)?;
            Ok(())
        })
    }

    /// The manifest that keeps the blob `digest` in this repository: its descriptor, and
    /// whether it was found only under the tag stores before 0.2 wrote (`sha256-<hex>`).
    pub fn artifact_manifest(&self, digest: &Digest) -> Result<(OciDescriptor, bool), OciError> {
        let hex = digest.hex().to_string();
        let (client, auth) = (self.client.clone(), self.auth.clone());
        let (host, repo) = (self.host.clone(), self.repo.clone());
        let failed = self.failed(&format!("finding the manifest of {digest} in"));
        self.block(async move {
            find_manifest(&client, &auth, &host, &repo, &hex)
                .await
                .map(|(d, legacy, _)| (d, legacy))
                .map_err(&failed)
        })
    }

    /// Attach `content` (of `media_type`) to the artifact whose blob is `digest`, as an OCI
    /// 1.1 referrer: a manifest whose `subject` is the artifact's manifest, announced
    /// through the referrers API where the registry has it and in the referrers tag
    /// schema's index where it does not. Attaching the same content twice changes nothing.
    /// Returns the referrer's location.
    pub fn push_referrer(
        &self,
        digest: &Digest,
        content: Vec<u8>,
        media_type: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<String, OciError> {
        let hex = digest.hex().to_string();
        let (client, auth) = (self.client.clone(), self.auth.clone());
        let (host, repo) = (self.host.clone(), self.repo.clone());
        let media_type = media_type.to_string();
        let failed = self.failed(&format!("attaching an attestation to {digest} in"));
        let url = self.url();
        self.block(async move {
            let at = Reference::with_tag(host.clone(), repo.clone(), tag_of(&hex));
            client
                .auth(&at, &auth, RegistryOperation::Push)
                .await
                .map_err(&failed)?;
            let (subject, legacy, body) = find_manifest(&client, &auth, &host, &repo, &hex)
                .await
                .map_err(&failed)?;
            if legacy {
                // A store written before 0.2: give the artifact its new tag, so the old one
                // is free for the referrers tag schema's use.
                client
                    .push_manifest_raw(&at, body, reqwest_header(OCI_IMAGE_MEDIA_TYPE))
                    .await
                    .map_err(&failed)?;
            }
            let blob = sha256_of(&content);
            let size = content.len() as i64;
            if !client.blob_exists(&at, &blob).await.map_err(&failed)? {
                client
                    .push_blob(&at, content, &blob)
                    .await
                    .map_err(&failed)?;
            }
            let empty = sha256_of(EMPTY_DATA);
            if !client.blob_exists(&at, &empty).await.map_err(&failed)? {
                client
                    .push_blob(&at, EMPTY_DATA, &empty)
                    .await
                    .map_err(&failed)?;
            }
            let manifest = OciImageManifest {
                schema_version: 2,
                media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
                config: OciDescriptor {
                    media_type: EMPTY_CONFIG.to_string(),
                    digest: empty,
                    size: EMPTY_DATA.len() as i64,
                    ..Default::default()
                },
                layers: vec![OciDescriptor {
                    media_type: media_type.clone(),
                    digest: blob,
                    size,
                    ..Default::default()
                }],
                subject: Some(subject.clone()),
                artifact_type: Some(media_type.clone()),
                annotations: (!annotations.is_empty()).then_some(annotations.clone()),
            };
            let body =
                serde_json::to_vec(&OciManifest::Image(manifest)).expect("a manifest serializes");
            let referrer = sha256_of(&body);
            let referrer_size = body.len() as i64;
            let by_digest = Reference::with_digest(host.clone(), repo.clone(), referrer.clone());
            client
                .push_manifest_raw(&by_digest, body, reqwest_header(OCI_IMAGE_MEDIA_TYPE))
                .await
                .map_err(&failed)?;
            // A registry with the referrers API lists it now; one without answers from the
            // tag schema's index (oci-client falls back by itself), which we keep.
            let subject_ref =
                Reference::with_digest(host.clone(), repo.clone(), subject.digest.clone());
            let listed = client
                .pull_referrers(&subject_ref, None)
                .await
                .map_err(&failed)?;
            if !listed.manifests.iter().any(|m| m.digest == referrer) {
                let tag = Reference::with_tag(host, repo, subject.digest.replace(':', "-"));
                let mut index: serde_json::Value = match client
                    .pull_manifest_raw(&tag, &auth, &[OCI_IMAGE_INDEX_MEDIA_TYPE])
                    .await
                {
                    Ok((bytes, _)) => serde_json::from_slice(&bytes).unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
                if !index["manifests"].is_array() {
                    index = serde_json::json!({
                        "schemaVersion": 2,
                        "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE,
                        "manifests": [],
                    });
                }
                if let Some(list) = index["manifests"].as_array_mut() {
                    list.push(serde_json::json!({
                        "mediaType": OCI_IMAGE_MEDIA_TYPE,
                        "digest": referrer,
                        "size": referrer_size,
                        "artifactType": media_type,
                        "annotations": annotations,
                    }));
                }
                let body = serde_json::to_vec(&index).expect("an index serializes");
                client
                    .push_manifest_raw(&tag, body, reqwest_header(OCI_IMAGE_INDEX_MEDIA_TYPE))
                    .await
                    .map_err(&failed)?;
            }
            Ok(format!("{url}@{referrer}"))
        })
    }

    /// The attestations of `media_type` attached to the artifact whose blob is `digest`
    /// (none when the artifact is not in this registry), each read and checked against
    /// its digest.
    pub fn referrers(&self, digest: &Digest, media_type: &str) -> Result<Vec<Attached>, OciError> {
        let hex = digest.hex().to_string();
        let (client, auth) = (self.client.clone(), self.auth.clone());
        let (host, repo) = (self.host.clone(), self.repo.clone());
        let media_type = media_type.to_string();
        let failed = self.failed(&format!("reading the attestations of {digest} in"));
        let url = self.url();
        self.block(async move {
            let at = Reference::with_tag(host.clone(), repo.clone(), tag_of(&hex));
            client
                .auth(&at, &auth, RegistryOperation::Pull)
                .await
                .map_err(&failed)?;
            let Ok((subject, _, _)) = find_manifest(&client, &auth, &host, &repo, &hex).await
            else {
                return Ok(Vec::new());
            };
            let subject_ref =
                Reference::with_digest(host.clone(), repo.clone(), subject.digest.clone());
            let listed = client
                .pull_referrers(&subject_ref, Some(&media_type))
                .await
                .map_err(&failed)?;
            let mut out = Vec::new();
            for entry in listed.manifests {
                let r = Reference::with_digest(host.clone(), repo.clone(), entry.digest.clone());
                let (bytes, _) = client
                    .pull_manifest_raw(&r, &auth, &[OCI_IMAGE_MEDIA_TYPE])
                    .await
                    .map_err(&failed)?;
                if sha256_of(&bytes) != entry.digest {
                    continue;
                }
                let Ok(manifest) = serde_json::from_slice::<OciImageManifest>(&bytes) else {
                    continue;
                };
                let Some(layer) = manifest.layers.first() else {
                    continue;
                };
                let mut content = Vec::new();
                client
                    .pull_blob(&r, layer, &mut content)
                    .await
                    .map_err(&failed)?;
                out.push(Attached {
                    location: format!("{url}@{}", entry.digest),
                    annotations: manifest.annotations.unwrap_or_default(),
                    content,
                });
            }
            Ok(out)
        })
    }

    /// Download the blob `digest` into `dest` (a new file), verifying it as it arrives.
    ///
    /// The response is hashed as it is read, on the registry's runtime, while a thread of
    /// its own writes what was read: the two overlap, and at most a few chunks are in
    /// memory at once.
    pub fn pull_to(&self, digest: &Digest, dest: &Path) -> Result<(), OciError> {
        let image = self.reference("latest");
        let (client, auth) = (self.client.clone(), self.auth.clone());
        let dest = dest.to_path_buf();
        let descriptor = OciDescriptor {
            digest: digest.to_string(),
            ..Default::default()
        };
        let what = format!("pulling {digest} from {}", self.url());
        let failed = self.failed(&format!("pulling {digest} from"));
        self.block(async move {
            use futures_util::StreamExt;
            client
                .auth(&image, &auth, RegistryOperation::Pull)
                .await
                .map_err(&failed)?;
            let file = std::fs::File::create(&dest).map_err(|source| OciError::Io {
                what: format!("creating {}", dest.display()),
                source,
            })?;
            let mut stream = client
                .pull_blob_stream(&image, &descriptor)
                .await
                .map_err(&failed)?;
            // Chunks go to the writer in batches of about READ_CHUNK bytes: one hand-over
            // per network read would cost more in wake-ups than the writing itself.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<bytes::Bytes>>(8);
            let writer = std::thread::spawn(move || -> std::io::Result<()> {
                use std::io::Write;
                let mut out = std::io::BufWriter::with_capacity(READ_CHUNK, file);
                for batch in rx {
                    for chunk in batch {
                        out.write_all(&chunk)?;
                    }
                }
                out.flush()
            });
            let mut read = Ok(());
            let (mut batch, mut batched) = (Vec::new(), 0);
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        batched += bytes.len();
                        batch.push(bytes);
                        // The writer failed when it stops taking batches: its error says why.
                        if batched >= READ_CHUNK {
                            batched = 0;
                            if tx.send(std::mem::take(&mut batch)).is_err() {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        read = Err(e);
                        break;
                    }
                }
            }
            if read.is_ok() && !batch.is_empty() {
                let _ = tx.send(batch);
            }
            drop(tx);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")));
            read.and(written)
                .map_err(|source| OciError::Io { what, source })
        })
    }
}

/// A registry repository, as a store URL names it.
pub struct Address {
    /// `host[:port]`
    pub host: String,
    pub repo: String,
    /// Written `oci+http://`: plain http whatever the host.
    pub forced_http: bool,
}

/// Parse `oci://HOST[:PORT]/REPO` (or `oci+http://…`); the error says what is wrong.
pub fn parse_url(url: &str) -> Result<Address, String> {
    let (forced_http, rest) = if let Some(r) = url.strip_prefix("oci+http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("oci://") {
        (false, r)
    } else {
        return Err("expected oci://HOST[:PORT]/REPOSITORY".into());
    };
    let (host, repo) = rest
        .trim_end_matches('/')
        .split_once('/')
        .ok_or("the repository is missing: expected oci://HOST[:PORT]/REPOSITORY")?;
    if host.is_empty() || repo.is_empty() || host.contains('@') {
        return Err("expected oci://HOST[:PORT]/REPOSITORY".into());
    }
    let repo_ok = repo.split('/').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    });
    if !repo_ok {
        return Err(
            "a repository name is lower-case letters, digits, `.`, `_` and `-`, with `/` between parts"
                .into(),
        );
    }
    Ok(Address {
        host: host.to_string(),
        repo: repo.to_string(),
        forced_http,
    })
}

/// The credentials the environment offers for `host`.
fn auth_from_env(host: &str) -> RegistryAuth {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("STAGEGATE_OCI_TOKEN") {
        return RegistryAuth::Bearer(token);
    }
    if let (Some(user), Some(password)) =
        (var("STAGEGATE_OCI_USERNAME"), var("STAGEGATE_OCI_PASSWORD"))
    {
        return RegistryAuth::Basic(user, password);
    }
    if host == "ghcr.io"
        && let Some(token) = var("GITHUB_TOKEN")
    {
        let user = var("GITHUB_ACTOR").unwrap_or_else(|| "stagegate".into());
        return RegistryAuth::Basic(user, token);
    }
    RegistryAuth::Anonymous
}

/// A file as a stream of chunks for the uploader; one chunk in memory at a time.
fn read_stream(
    f: tokio::fs::File,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::try_unfold(f, |mut f| async move {
        let mut buf = bytes::BytesMut::with_capacity(READ_CHUNK);
        while buf.len() < READ_CHUNK {
            if f.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        Ok(if buf.is_empty() {
            None
        } else {
            Some((buf.freeze(), f))
        })
    })
}

/// The manifest tagged for blob `hex` (`sg-<hex>`, else the pre-0.2 `sha256-<hex>`): its
/// descriptor, whether only the old tag had it, and its bytes.
async fn find_manifest(
    client: &Client,
    auth: &RegistryAuth,
    host: &str,
    repo: &str,
    hex: &str,
) -> oci_client::errors::Result<(OciDescriptor, bool, Vec<u8>)> {
    let mut first_error = None;
    for (tag, legacy) in [(tag_of(hex), false), (legacy_tag_of(hex), true)] {
        let at = Reference::with_tag(host.to_string(), repo.to_string(), tag);
        match client
            .pull_manifest_raw(&at, auth, &[OCI_IMAGE_MEDIA_TYPE])
            .await
        {
            Ok((bytes, digest)) => {
                let descriptor = OciDescriptor {
                    media_type: OCI_IMAGE_MEDIA_TYPE.to_string(),
                    digest,
                    size: bytes.len() as i64,
                    ..Default::default()
                };
                return Ok((descriptor, legacy, bytes.to_vec()));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("two tags were tried"))
}

fn reqwest_header(value: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(value)
}

fn sha256_of(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
