//! Strict parsing of one manifest file into the model, with located diagnostics.
//!
//! YAML goes through `serde-saphyr` with budgets (alias bombs, deep nesting, huge
//! documents) and duplicate-key errors; every field is `deny_unknown_fields`. Checks that
//! need only the one file (names, paths, durations) happen here; checks across files live
//! in `manifest::set`.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_saphyr::Spanned;

use super::doc::*;
use super::model::*;
use crate::diag::{Diagnostic, Diagnostics, Pos};

/// Larger manifests are refused before parsing: nothing legitimate is this big.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 32;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_events = 200_000;
    budget.max_total_scalar_bytes = MAX_MANIFEST_BYTES;
    budget.max_documents = 1;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options
}

/// Deserialize `bytes` as `T`, turning any YAML or shape error into a located diagnostic.
pub fn from_yaml<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, Diagnostic> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(Diagnostic::new(
            file,
            Pos::FILE,
            format!(
                "file is {} bytes; a manifest may be at most {MAX_MANIFEST_BYTES}",
                bytes.len()
            ),
        )
        .with_help("manifests describe items; keep large data in files the manifest names"));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Diagnostic::new(file, Pos::FILE, format!("file is not UTF-8 text ({e})")))?;
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| yaml_diagnostic(file, &e))
}

/// A gate's `bisect:`: `true` (the default reproductions), `false`, or `{reproduce: N}`.
fn bisect_policy(c: &mut Check, b: &Spanned<BisectDoc>) -> Option<BisectPolicy> {
    match &b.value {
        BisectDoc::Flag(on) => on.then(BisectPolicy::default),
        BisectDoc::Full(full) => {
            let Some(n) = &full.reproduce else {
                return Some(BisectPolicy::default());
            };
            if !(1..=i64::from(MAX_REPRODUCE)).contains(&n.value) {
                // Inside an untagged value the number has no location of its own: point
                // at the `bisect:` value.
                c.err(
                    Pos::of(b),
                    format!("`bisect.reproduce` is {}; it must be between 1 and {MAX_REPRODUCE}", n.value),
                    Some(format!(
                        "the number of agreeing results that settle one tested commit (default {DEFAULT_REPRODUCE})"
                    )),
                );
                return None;
            }
            Some(BisectPolicy {
                reproduce: n.value as u32,
            })
        }
    }
}

fn yaml_diagnostic(file: &str, e: &serde_saphyr::Error) -> Diagnostic {
    let pos = e
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Pos {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or(Pos::FILE);
    // The rendered message may repeat the location; keep the first line, without it.
    let rendered = e.without_snippet().to_string();
    let mut message = rendered
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    if let Some(idx) = message.find(" at line ") {
        message.truncate(idx);
    }
    let (message, help) = plain_words(&message);
    let d = Diagnostic::new(file, pos, message);
    match help {
        Some(h) => d.with_help(h),
        None => d,
    }
}

/// The YAML library's message in the words of a manifest's author: no library option or
/// Rust type names (`DuplicateKeyPolicy`, `untagged enum Scalar`, `Documents { .. }`),
/// and a hint where one helps.
fn plain_words(message: &str) -> (String, Option<&'static str>) {
    let budget = |what: &str| {
        (
            what.to_string(),
            Some("a manifest is small: keep large data in files the manifest names"),
        )
    };
    if let Some(breach) = message.strip_prefix("budget breached: ") {
        let kind = breach.split([' ', '{']).next().unwrap_or_default();
        return match kind {
            "Documents" => (
                "a manifest is one YAML document, and this file has more (a `---` line starts another)".into(),
                Some("remove the `---` line and what follows it, or move it into a file of its own"),
            ),
            "Depth" => budget("values are nested more than 32 levels deep"),
            "Aliases" => budget("more than 1,000 aliases (`*name`)"),
            "Anchors" => budget("more than 1,000 anchors (`&name`)"),
            "ScalarBytes" => budget("more than 1 MiB of text"),
            _ => budget("too many values for a manifest"),
        };
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or_default()
            .trim_start_matches(':')
            .trim();
        let what = if key.is_empty() {
            "duplicate key: it appears twice in this mapping".to_string()
        } else {
            format!("duplicate key `{key}`: it appears twice in this mapping")
        };
        return (
            what,
            Some("each key may appear once in a mapping: keep one"),
        );
    }
    let shape = |what: &str, help: &'static str| (what.to_string(), Some(help));
    match message {
        "expected mapping start" => shape(
            "expected a mapping here",
            "write `key: value` lines (or `{key: value}`)",
        ),
        "expected sequence start" => {
            shape("expected a list here", "write `[a, b]`, or `- a` lines")
        }
        "expected string scalar" => shape(
            "expected a single text value here",
            "write one value, not a list or mapping",
        ),
        "unexpected end of input" => shape(
            "the file ends before any content",
            "a manifest is a mapping of `key: value` lines",
        ),
        m if m.starts_with("invalid u") || m.starts_with("invalid i") => shape(
            "expected a whole number here",
            "write a number such as 0, 1 or 2",
        ),
        m if m.contains("untagged enum Scalar") => shape(
            "expected a single value here (text or a number)",
            "quote it to be safe: `version: \"1.2\"`",
        ),
        m if m.contains("untagged enum StageDoc") => shape(
            "expected a stage: a name, or {name: NAME, branch: BRANCH}",
            "e.g. `stages: [new, {name: stable, branch: main}]`",
        ),
        m if m.contains("untagged enum BasedOn") => shape(
            "expected {image: NAME} or {component: NAME, version: VERSION}",
            "the README's image format shows both forms",
        ),
        m if m.contains("untagged enum") => shape(
            "this value has none of the accepted shapes",
            "the README's file formats show each field's shape",
        ),
        m if m.contains("unknown field") => (
            m.to_string(),
            Some("remove the field, or check its spelling against the README's file formats"),
        ),
        m if m.contains("missing field") => (
            m.to_string(),
            Some("add the field; the README lists each manifest's required fields"),
        ),
        m => (m.to_string(), None),
    }
}

/// Collects problems while converting a document into the model.
struct Check<'a> {
    file: &'a str,
    /// The file's text, to read a scalar as it was written (see [`Check::scalar`]).
    text: &'a [u8],
    diags: Diagnostics,
    /// The repository paths this file names, where it names them.
    named: Vec<Named>,
}

/// A repository path a manifest names — the script a `run` line starts with, or a `files`
/// entry — with where it is written, so `manifest::set` can say what is wrong with the file
/// there (missing, a link, not executable) at the right line.
#[derive(Debug, Clone)]
pub struct Named {
    /// The field, as the README spells it: `run`, `build.files`, …
    pub field: String,
    /// The whole `run` line, or the path of a `files` entry (without a leading `./`).
    pub text: String,
    pub pos: Pos,
    /// Whether this is a `run` line (whose script must be an executable file).
    pub run: bool,
}

impl<'a> Check<'a> {
    fn new(file: &'a str, text: &'a [u8]) -> Self {
        Check {
            file,
            text,
            diags: Diagnostics::default(),
            named: Vec::new(),
        }
    }

    /// A text-valued scalar YAML may have read as a number: its text as written. A number
    /// whose text YAML does not keep (`3.10` is 3.1, `1.0` is 1, `0x10` is 16) is refused
    /// with the quoted spelling as the fix, since any other reading silently changes it.
    fn scalar(&mut self, field: &str, v: &Spanned<Scalar>) -> String {
        let read = match &v.value {
            Scalar::Text(s) => return s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
        };
        if v.referenced.line() == 0 {
            // No location of its own (inside an untagged value): do not guess.
            return read;
        }
        let pos = Pos::of(v);
        let written = written_at(self.text, pos);
        match written {
            Some(w) if w != read => {
                let key = field.rsplit('.').next().unwrap_or(field);
                self.err(
                    pos,
                    format!(
                        "`{field}: {w}` is read by YAML as the number {read}, not the text {w:?}"
                    ),
                    Some(format!("quote it: {key}: \"{w}\"")),
                );
                w
            }
            _ => read,
        }
    }

    /// A `needs:` list: each a valid label, each once.
    fn needs(&mut self, field: &str, needs: &[Spanned<String>]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for n in needs {
            if !valid_label(&n.value) {
                self.err(
                    Pos::of(n),
                    format!("`{field}` entry {:?} is not a host label", n.value),
                    Some(
                        "use lower-case letters, digits, '.', '_' and '-', e.g. `needs: [kvm, x86_64]`"
                            .into(),
                    ),
                );
            } else if out.contains(&n.value) {
                self.err(
                    Pos::of(n),
                    format!("`{field}` lists {:?} twice", n.value),
                    Some("list each label once".into()),
                );
            } else {
                out.push(n.value.clone());
            }
        }
        out.sort();
        out
    }

    fn err(&mut self, pos: Pos, msg: impl Into<String>, help: Option<String>) {
        let d = Diagnostic::new(self.file, pos, msg);
        self.diags.push(match help {
            Some(h) => d.with_help(h),
            None => d,
        });
    }

    fn name(&mut self, what: &str, name: &Spanned<String>) {
        if !valid_name(&name.value) {
            self.err(
                Pos::of(name),
                format!("invalid {what} name {:?}", name.value),
                Some("use lower-case letters, digits, '.', '_' and '-' (no '/', no '..')".into()),
            );
        }
    }

    /// The `name:` must match the file name, so `images/x.yaml` is always item `images/x`.
    fn name_matches_file(&mut self, name: &Spanned<String>) {
        let stem = self
            .file
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_suffix(".yaml"))
            .unwrap_or_default();
        if name.value != stem {
            self.err(
                Pos::of(name),
                format!(
                    "name {:?} does not match the file name {:?}",
                    name.value, stem
                ),
                Some(format!(
                    "set `name: {stem}`, or rename the file to {}/{}.yaml",
                    self.file.rsplit_once('/').map_or(".", |(dir, _)| dir),
                    name.value
                )),
            );
        }
    }

    fn duration(&mut self, field: &str, d: &Option<Spanned<String>>) -> Option<Duration> {
        let d = d.as_ref()?;
        match humantime::parse_duration(d.value.trim()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(
                    Pos::of(d),
                    format!("`{field}` is not a duration: {:?} ({e})", d.value),
                    Some("write a number and a unit, e.g. 30m, 2h, 7d".into()),
                );
                None
            }
        }
    }

    /// A gate's `errors:` policy.
    fn errors(&mut self, e: &Option<Spanned<ErrorsDoc>>) -> ErrorPolicy {
        let mut policy = ErrorPolicy::default();
        let Some(e) = e else {
            return policy;
        };
        if let Some(r) = &e.value.retries {
            if r.value <= MAX_ERROR_RETRIES {
                policy.retries = r.value;
            } else {
                self.err(
                    Pos::of(r),
                    format!(
                        "`errors.retries` is {}; it must be 0 to {MAX_ERROR_RETRIES}",
                        r.value
                    ),
                    Some("how many times a job that could not run is tried again".into()),
                );
            }
        }
        if let Some(b) = self.duration("errors.backoff", &e.value.backoff) {
            policy.backoff = b;
        }
        policy
    }

    /// A gate's `flaky:` policy.
    fn flaky(&mut self, f: &Option<Spanned<FlakyDoc>>) -> FlakyPolicy {
        let Some(f) = f else {
            return FlakyPolicy::default();
        };
        let tries = f.value.tries.as_ref();
        let policy = match f.value.policy.value.as_str() {
            "block" => FlakyPolicy::Block,
            "allow" => FlakyPolicy::Allow,
            "wait" => match tries {
                Some(t) if (1..=MAX_FLAKY_TRIES).contains(&t.value) => {
                    return FlakyPolicy::Wait { tries: t.value };
                }
                Some(t) => {
                    self.err(
                        Pos::of(t),
                        format!(
                            "`flaky.tries` is {}; it must be 1 to {MAX_FLAKY_TRIES}",
                            t.value
                        ),
                        Some(
                            "how many more tries a flaky job gets before its failure counts".into(),
                        ),
                    );
                    return FlakyPolicy::default();
                }
                None => {
                    self.err(
                        Pos::of(&f.value.policy),
                        "`flaky.policy: wait` needs `tries`",
                        Some("e.g. `flaky: {policy: wait, tries: 2}`".into()),
                    );
                    return FlakyPolicy::default();
                }
            },
            other => {
                self.err(
                    Pos::of(&f.value.policy),
                    format!("unknown flaky policy {other:?}"),
                    Some("expected `block`, `wait` (with `tries: N`) or `allow`".into()),
                );
                return FlakyPolicy::default();
            }
        };
        if let Some(t) = tries {
            self.err(
                Pos::of(t),
                format!(
                    "`flaky.tries` only counts with `policy: wait`, not {:?}",
                    f.value.policy.value
                ),
                Some("remove `tries`, or say `policy: wait`".into()),
            );
        }
        policy
    }

    /// A job's timeout: a duration no longer than [`MAX_TIMEOUT`].
    fn timeout(&mut self, field: &str, d: &Option<Spanned<String>>) -> Option<Duration> {
        let v = self.duration(field, d)?;
        if v > MAX_TIMEOUT {
            self.err(
                Pos::of(d.as_ref().expect("parsed, so present")),
                format!(
                    "`{field}` is {}; a job may run for at most {}",
                    humantime::format_duration(v),
                    humantime::format_duration(MAX_TIMEOUT)
                ),
                Some("split the job, or lower the timeout".into()),
            );
        }
        Some(v)
    }

    /// A path inside the repository (or inside `$STAGEGATE_OUT`): relative, no `..`.
    fn rel_path(&mut self, field: &str, p: &Spanned<String>) -> String {
        if let Err(why) = check_rel_path(&p.value) {
            self.err(
                Pos::of(p),
                format!("`{field}` path {:?} {why}", p.value),
                Some("paths are relative to the repository root and stay inside it".into()),
            );
        }
        let path = p.value.trim_start_matches("./").to_string();
        if field.ends_with("files") {
            self.named.push(Named {
                field: field.to_string(),
                text: path.clone(),
                pos: Pos::of(p),
                run: false,
            });
        }
        path
    }

    /// A `run` line: if it starts with a relative path, that path must stay in the repo.
    fn run(&mut self, field: &str, run: &Spanned<String>) -> String {
        let first = run.value.split_whitespace().next().unwrap_or_default();
        if first.is_empty() {
            self.err(
                Pos::of(run),
                format!("`{field}` is empty"),
                Some("name a script, e.g. ./tests/boot.sh".into()),
            );
        } else if (first.starts_with("./") || first.starts_with("../"))
            && check_rel_path(first).is_err()
        {
            self.err(
                Pos::of(run),
                format!("`{field}` runs {first:?}, which is outside the repository"),
                Some("scripts run from the repository root; keep them inside it".into()),
            );
        }
        self.named.push(Named {
            field: field.to_string(),
            text: run.value.clone(),
            pos: Pos::of(run),
            run: true,
        });
        run.value.clone()
    }

    fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        self.finish_named(value).map(|(v, _)| v)
    }

    fn finish_named<T>(self, value: T) -> Result<(T, Vec<Named>), Diagnostics> {
        if self.diags.is_empty() {
            Ok((value, self.named))
        } else {
            Err(self.diags)
        }
    }
}

/// The plain scalar that starts at `pos` in `text`, as written: up to a comment, the end of
/// the line or the end of a flow collection. `None` when `pos` is not in the text.
fn written_at(text: &[u8], pos: Pos) -> Option<String> {
    let line = std::str::from_utf8(text)
        .ok()?
        .lines()
        .nth(usize::try_from(pos.line.checked_sub(1)?).ok()?)?;
    let rest: String = line
        .chars()
        .skip(usize::try_from(pos.column.checked_sub(1)?).ok()?)
        .collect();
    let end = [" #", ",", "}", "]"]
        .iter()
        .filter_map(|stop| rest.find(stop))
        .min()
        .unwrap_or(rest.len());
    let w = rest[..end].trim();
    (!w.is_empty()).then(|| w.to_string())
}

/// A branch's short name, as `git branch NAME` would take it: `staging`, not
/// `refs/heads/staging` (which would name `refs/heads/refs/heads/staging`).
fn branch_name(b: &str) -> Result<(), &'static str> {
    if b.starts_with("refs/") {
        return Err("stagegate adds refs/heads/ itself");
    }
    if b == "HEAD" || b.starts_with('-') {
        return Err("git does not allow it as a branch");
    }
    if gix::validate::reference::name_partial(b.into()).is_err() {
        return Err("git does not allow it as a branch");
    }
    Ok(())
}

/// Relative, non-empty, no `..` component, no absolute path.
pub fn check_rel_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    if p.starts_with('/') || p.starts_with('\\') {
        return Err("is absolute");
    }
    if p.split(['/', '\\']).any(|c| c == "..") {
        return Err("escapes the repository with '..'");
    }
    Ok(())
}

pub fn parse_pipeline(file: &str, bytes: &[u8]) -> Result<Pipeline, Diagnostics> {
    let doc: PipelineDoc = from_yaml(file, bytes).map_err(|d| Diagnostics(vec![d]))?;
    let mut c = Check::new(file, bytes);
    if doc.version.value != 1 {
        c.err(
            Pos::of(&doc.version),
            format!(
                "unsupported version {}; this stagegate reads version 1",
                doc.version.value
            ),
            Some("set `version: 1`".into()),
        );
    }
    let mut stages: Vec<Stage> = Vec::new();
    for s in &doc.stages {
        let stage = match &s.value {
            StageDoc::Name(n) => Stage {
                name: n.clone(),
                branch: n.clone(),
            },
            StageDoc::Full(f) => Stage {
                name: f.name.clone(),
                branch: f.branch.clone(),
            },
        };
        if !valid_name(&stage.name) {
            c.err(
                Pos::of(s),
                format!("invalid stage name {:?}", stage.name),
                Some("use lower-case letters, digits, '.', '_' and '-'".into()),
            );
        }
        if let Err(why) = branch_name(&stage.branch) {
            c.err(
                Pos::of(s),
                format!(
                    "stage {:?}: {:?} is not a branch name: {why}",
                    stage.name, stage.branch
                ),
                Some(match stage.branch.strip_prefix("refs/heads/") {
                    Some(short) => format!("write the branch's short name: `branch: {short}`"),
                    None => "write a branch name such as `main` or `release/stable`".into(),
                }),
            );
        }
        if stages.iter().any(|o| o.name == stage.name) {
            c.err(
                Pos::of(s),
                format!("stage {:?} is listed twice", stage.name),
                Some("each stage appears once, in pipeline order".into()),
            );
        } else if stages.iter().any(|o| o.branch == stage.branch) {
            c.err(
                Pos::of(s),
                format!("branch {:?} is used by two stages", stage.branch),
                None,
            );
        }
        stages.push(stage);
    }
    if stages.len() < 2 {
        c.err(
            Pos::FILE,
            "a pipeline needs at least two stages",
            Some("e.g. `stages: [new, staging, stable]`".into()),
        );
    }
    let mut gates = Vec::new();
    for (stage, g) in &doc.gates {
        let pos = Pos::of(g);
        match stages.iter().position(|s| &s.name == stage) {
            None => {
                let names: Vec<&str> = stages.iter().skip(1).map(|s| s.name.as_str()).collect();
                c.err(
                    pos,
                    format!("gate for unknown stage {stage:?}"),
                    Some(format!(
                        "gates are keyed by the stage they guard: one of {}",
                        names.join(", ")
                    )),
                );
            }
            Some(0) => c.err(
                pos,
                format!("the first stage {stage:?} cannot have a gate"),
                Some("commits enter the first stage directly; gate the stages after it".into()),
            ),
            Some(_) => {}
        }
        let mut require = Vec::new();
        for r in &g.value.require {
            match r.value.as_str() {
                "build" => require.push(Requirement::Build),
                "test" => require.push(Requirement::Test),
                other => c.err(
                    Pos::of(r),
                    format!("unknown requirement {other:?}"),
                    Some("expected `build` or `test`".into()),
                ),
            }
        }
        let soak = c.duration("soak", &g.value.soak);
        let bisect = g
            .value
            .bisect
            .as_ref()
            .and_then(|b| bisect_policy(&mut c, b));
        let flaky = c.flaky(&g.value.flaky);
        let errors = c.errors(&g.value.errors);
        gates.push((
            stage.clone(),
            Gate {
                require,
                soak,
                review: g.value.review,
                baseline: g.value.baseline,
                bisect,
                flaky,
                errors,
            },
        ));
    }
    let results_ref = match doc.results.as_ref().and_then(|r| r.reference.as_ref()) {
        Some(r) => {
            if !r.value.starts_with("refs/")
                || gix::validate::reference::name(r.value.as_str().into()).is_err()
            {
                c.err(
                    Pos::of(r),
                    format!("invalid results ref {:?}", r.value),
                    Some(format!("use a full ref name such as {DEFAULT_RESULTS_REF}")),
                );
            }
            r.value.clone()
        }
        None => DEFAULT_RESULTS_REF.to_string(),
    };
    let push_results = doc.results.as_ref().is_some_and(|r| r.push);
    let artifact_store = doc.artifacts.map(|a| {
        let store = &a.store;
        let problem = match store.value.split_once("://") {
            Some(("oci" | "oci+http", _)) => crate::artifact::oci::parse_url(&store.value).err(),
            Some(("file", _)) | None => None,
            Some((scheme, _)) => Some(format!("the {scheme}:// scheme is not supported")),
        };
        if let Some(why) = problem {
            c.err(
                Pos::of(store),
                format!("artifacts.store {:?}: {why}", store.value),
                Some(
                    "use a directory, a file:// URL, or oci://HOST[:PORT]/REPOSITORY (e.g. oci://ghcr.io/OWNER/stagegate-artifacts)"
                        .into(),
                ),
            );
        }
        store.value.clone()
    });
    let env = doc.env.map(|e| job_env(&mut c, e)).unwrap_or_default();
    let trust = doc.trust.map(|t| trust(&mut c, t));
    let mut labels = std::collections::BTreeMap::new();
    for (name, l) in &doc.labels {
        let pos = Pos::of(l);
        if !valid_label(name) {
            c.err(
                pos,
                format!("`labels` names {name:?}, which is not a host label"),
                Some("use lower-case letters, digits, '.', '_' and '-', e.g. `kvm`".into()),
            );
        }
        let field = format!("labels.{name}");
        let health = l
            .value
            .health
            .as_ref()
            .map(|h| c.run(&format!("{field}.health"), h));
        let every = c
            .duration(&format!("{field}.every"), &l.value.every)
            .unwrap_or(DEFAULT_HEALTH_EVERY);
        let mut runner = |key: &str, doc: &Option<Spanned<RunsOnDoc>>| match doc
            .as_ref()
            .map(|r| (&r.value, Pos::of(r)))
        {
            None => Vec::new(),
            Some((RunsOnDoc::One(one), p)) => {
                runner_labels(&mut c, &field, key, p, std::slice::from_ref(one))
            }
            Some((RunsOnDoc::Many(many), p)) => runner_labels(&mut c, &field, key, p, many),
        };
        let runs_on = runner("runs-on", &l.value.runs_on);
        let tags = runner("tags", &l.value.tags);
        labels.insert(
            name.clone(),
            LabelPolicy {
                health,
                every,
                runs_on,
                tags,
                exclusive: l.value.exclusive,
            },
        );
    }
    let forge = doc.forge.as_ref().and_then(|f| forge(&mut c, f));
    c.finish(Pipeline {
        stages,
        gates,
        results_ref,
        push_results,
        artifact_store,
        env,
        trust,
        labels,
        forge,
    })
}

/// `forge:`: `github` or `gitlab`, with an http(s) URL and a `group/name` project.
fn forge(c: &mut Check, f: &Spanned<ForgeDoc>) -> Option<ForgeSetting> {
    let pos = Pos::of(f);
    let (kind, url, project) = match &f.value {
        ForgeDoc::Kind(k) => (k.as_str(), None, None),
        ForgeDoc::Full(full) => (full.kind.as_str(), full.url.clone(), full.project.clone()),
    };
    let kind = match kind.trim().to_ascii_lowercase().as_str() {
        "github" => ForgeName::Github,
        "gitlab" => ForgeName::Gitlab,
        other => {
            c.err(
                pos,
                format!("`forge` names {other:?}, which is not a forge stagegate speaks to"),
                Some("use `forge: github` or `forge: gitlab`".into()),
            );
            return None;
        }
    };
    if let Some(u) = &url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        c.err(
            pos,
            format!("`forge.url` {u:?} is not an http(s) URL"),
            Some("give the instance, e.g. `url: https://gitlab.example.org`".into()),
        );
    }
    if let Some(p) = &project
        && (!p.contains('/') || p.split('/').any(|s| s.is_empty() || s == "." || s == ".."))
    {
        c.err(
            pos,
            format!("`forge.project` {p:?} is not a project path"),
            Some("write it as group/name, e.g. `project: xen-project/state`".into()),
        );
    }
    Some(ForgeSetting { kind, url, project })
}

/// `labels.NAME.runs-on` (GitHub) or `labels.NAME.tags` (GitLab): CI runner labels, each
/// non-empty and without spaces or commas.
fn runner_labels(c: &mut Check, field: &str, key: &str, pos: Pos, given: &[String]) -> Vec<String> {
    let example = if key == "tags" {
        "tags: [arm64]"
    } else {
        "runs-on: [self-hosted, arm64]"
    };
    if given.is_empty() {
        c.err(
            pos,
            format!("`{field}.{key}` is empty"),
            Some(format!("name the runner labels, e.g. `{example}`")),
        );
    }
    for l in given {
        if l.trim().is_empty() || l.contains(|ch: char| ch.is_whitespace() || ch == ',') {
            c.err(
                pos,
                format!("`{field}.{key}` entry {l:?} is not a runner label"),
                Some("a runner label has no spaces or commas, e.g. `self-hosted`".into()),
            );
        }
    }
    given.to_vec()
}

/// `env: {pass, secret}`: variable names, each listed once, none of the tool's own.
/// `trust:`: every key an ed25519 OpenSSH public key, every name once, every `may` a kind of
/// record, every ledger commit a full hex id.
fn trust(c: &mut Check, doc: TrustDoc) -> Trust {
    let key = |c: &mut Check, field: &str, k: &Spanned<String>| -> String {
        if let Err(why) = crate::sshsig::parse_public_key(&k.value) {
            c.err(
                Pos::of(k),
                format!("`{field}` is not a usable public key: {why}"),
                Some("paste one line of a .pub file, e.g. `ssh-ed25519 AAAAC3Nz… ci@runner` (make one with `ssh-keygen -t ed25519`)".into()),
            );
        }
        k.value.trim().to_string()
    };
    let commit = |c: &mut Check, field: &str, v: &Spanned<String>| -> String {
        if v.value.len() != 40 || !v.value.bytes().all(|b| b.is_ascii_hexdigit()) {
            c.err(
                Pos::of(v),
                format!("`{field}` {:?} is not a full commit id", v.value),
                Some("name a commit of the results ledger in full (40 hex digits): `git rev-parse refs/stagegate/results`".into()),
            );
        }
        v.value.to_ascii_lowercase()
    };
    let mut names: Vec<String> = Vec::new();
    let mut unique = |c: &mut Check, n: &Spanned<String>| {
        if names.contains(&n.value) {
            c.err(
                Pos::of(n),
                format!("{:?} is named twice in `trust`", n.value),
                Some(
                    "give each runner and person one entry (rotate a key by retiring the old one)"
                        .into(),
                ),
            );
        }
        names.push(n.value.clone());
    };
    let mut out = Trust {
        since: doc.since.as_ref().map(|s| commit(c, "trust.since", s)),
        ..Trust::default()
    };
    for r in &doc.runners {
        unique(c, &r.value.name);
        out.runners.push(TrustedKey {
            name: r.value.name.value.clone(),
            key: key(c, "trust.runners.key", &r.value.key),
        });
    }
    for p in &doc.people {
        let p = &p.value;
        unique(c, &p.name);
        let mut may = Vec::new();
        for m in &p.may {
            match RecordKind::parse(&m.value) {
                Some(k) => may.push(k),
                None => c.err(
                    Pos::of(m),
                    format!("{:?} is not a kind of record a person may write", m.value),
                    Some(format!(
                        "one of {}",
                        RecordKind::ALL.map(|k| k.as_str()).join(", ")
                    )),
                ),
            }
        }
        out.people.push(TrustedPerson {
            name: p.name.value.clone(),
            key: p.key.as_ref().map(|k| key(c, "trust.people.key", k)),
            may,
            github: p.github.clone(),
            gitlab: p.gitlab.clone(),
        });
    }
    for r in &doc.retired {
        out.retired.push(RetiredKey {
            name: r.value.name.clone(),
            key: key(c, "trust.retired.key", &r.value.key),
            until: r
                .value
                .until
                .as_ref()
                .map(|u| commit(c, "trust.retired.until", u)),
        });
    }
    out
}

fn job_env(c: &mut Check, doc: EnvDoc) -> JobEnv {
    let mut seen: Vec<String> = Vec::new();
    let mut names = |c: &mut Check, field: &str, list: Vec<Spanned<String>>| -> Vec<String> {
        let mut out = Vec::new();
        for n in list {
            let pos = Pos::of(&n);
            let ok = n
                .value
                .starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
                && n.value
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !ok {
                c.err(
                    pos,
                    format!("`env.{field}` entry {:?} is not a variable name", n.value),
                    Some("write names such as HTTP_PROXY: letters, digits and '_'".into()),
                );
            } else if TOOL_SECRETS.contains(&n.value.as_str()) {
                c.err(
                    pos,
                    format!("`env.{field}` lists {}, stagegate's own credential", n.value),
                    Some("the tool's tokens never reach a job; give the job a token of its own under another name, listed in `env.secret`".into()),
                );
            } else if JOB_VARS.contains(&n.value.as_str())
                || n.value.starts_with("LC_")
                || FIXED_ENV.contains(&n.value.as_str())
            {
                c.err(
                    pos,
                    format!("`env.{field}` lists {}, which stagegate sets for every job", n.value),
                    Some("remove it: jobs always get PATH, HOME, LANG, LC_*, TMPDIR and the STAGEGATE_* variables that describe them".into()),
                );
            } else if seen.contains(&n.value) {
                c.err(pos, format!("{} is listed twice in `env`", n.value), None);
            } else {
                seen.push(n.value.clone());
                out.push(n.value);
            }
        }
        out
    };
    let pass = names(c, "pass", doc.pass);
    let secret = names(c, "secret", doc.secret);
    JobEnv { pass, secret }
}

/// Variables every job gets from the runner, whatever the pipeline says.
pub const FIXED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR"];

/// Variables the runner sets to describe a job (a pipeline cannot pass its own values).
pub const JOB_VARS: &[&str] = &[
    "STAGEGATE_JOB",
    "STAGEGATE_JOB_NAME",
    "STAGEGATE_ROLE",
    "STAGEGATE_COMMIT",
    "STAGEGATE_OUT",
    "STAGEGATE_ENV_FILE",
    "STAGEGATE_ITEM",
    "STAGEGATE_VERSION",
    "STAGEGATE_CACHE",
    "STAGEGATE_CACHE_DIGEST",
    "STAGEGATE_CACHE_VERSION",
];

pub fn parse_item(kind: ItemKind, file: &str, bytes: &[u8]) -> Result<Item, Diagnostics> {
    parse_item_named(kind, file, bytes).map(|(item, _)| item)
}

/// [`parse_item`], with the repository paths the manifest names and where.
pub fn parse_item_named(
    kind: ItemKind,
    file: &str,
    bytes: &[u8],
) -> Result<(Item, Vec<Named>), Diagnostics> {
    match kind {
        ItemKind::Image => parse_image(file, bytes),
        ItemKind::Component => parse_component(file, bytes),
    }
}

fn parse_image(file: &str, bytes: &[u8]) -> Result<(Item, Vec<Named>), Diagnostics> {
    let doc: ImageDoc = from_yaml(file, bytes).map_err(|d| Diagnostics(vec![d]))?;
    let mut c = Check::new(file, bytes);
    c.name("image", &doc.name);
    c.name_matches_file(&doc.name);
    let based_on = doc.based_on.as_ref().and_then(|b| {
        let pos = Pos::of(b);
        match (&b.value.image, &b.value.component) {
            (Some(img), None) => {
                if b.value.version.is_some() {
                    c.err(
                        pos,
                        "`based-on` an image takes no version: the image's own stage decides it",
                        None,
                    );
                }
                Some(BasedOn::Image { image: img.clone() })
            }
            (None, Some(comp)) => Some(BasedOn::Upstream {
                component: comp.clone(),
                version: b
                    .value
                    .version
                    .as_ref()
                    .map(|v| c.scalar("based-on.version", v)),
            }),
            _ => {
                c.err(
                    pos,
                    "`based-on` needs exactly one of `image` or `component`",
                    Some("e.g. `based-on: {image: debian-host}`".into()),
                );
                None
            }
        }
    });
    let build = doc.build.as_ref().map(|b| build(&mut c, b));
    let max_age = c.duration("max-age", &doc.max_age);
    let watch = doc.watch.as_ref().map(|w| Watch {
        run: c.run("watch.run", &w.run),
        timeout: c.timeout("watch.timeout", &w.timeout),
    });
    let version = version(&mut c, doc.version);
    let needs = c.needs("needs", &doc.needs);
    c.finish_named(Item {
        id: ItemId::new(ItemKind::Image, doc.name.value),
        version,
        description: doc.description,
        based_on,
        build,
        max_age,
        watch,
        source: None,
        needs,
    })
}

/// The `build` of an image or a component.
fn build(c: &mut Check, b: &BuildDoc) -> Build {
    let build = Build {
        run: c.run("build.run", &b.run),
        timeout: c.timeout("build.timeout", &b.timeout),
        artifact: c.rel_path("build.artifact", &b.artifact),
        lock: b.lock.as_ref().map(|l| c.rel_path("build.lock", l)),
        cache: b.cache.as_ref().map(|l| c.rel_path("build.cache", l)),
        files: b
            .files
            .iter()
            .map(|f| c.rel_path("build.files", f))
            .collect(),
    };
    // Each output is its own file in $STAGEGATE_OUT: one file named twice would be
    // stored twice under one name, and the cache would pass for the image.
    if let Some(cache) = &b.cache {
        for (field, other) in [
            ("build.artifact", Some(&build.artifact)),
            ("build.lock", build.lock.as_ref()),
        ] {
            if build.cache.as_ref() == other {
                c.err(
                    Pos::of(cache),
                    format!("`build.cache` names {:?}, the same file as `{field}`", cache.value),
                    Some("the cache is a file of its own in $STAGEGATE_OUT, e.g. `cache: packages.tar`".into()),
                );
            }
        }
    }
    build
}

fn version(c: &mut Check, v: Spanned<Scalar>) -> String {
    let pos = Pos::of(&v);
    let s = c.scalar("version", &v);
    if s.trim().is_empty() || s.contains('\n') {
        c.err(
            pos,
            "`version` must be a non-empty, single-line string",
            None,
        );
    }
    s
}

fn parse_component(file: &str, bytes: &[u8]) -> Result<(Item, Vec<Named>), Diagnostics> {
    let doc: ComponentDoc = from_yaml(file, bytes).map_err(|d| Diagnostics(vec![d]))?;
    let mut c = Check::new(file, bytes);
    c.name("component", &doc.name);
    c.name_matches_file(&doc.name);
    let source = doc.source.as_ref().map(|s| {
        if let Some(commit) = &s.commit
            && (commit.value.len() < 4
                || commit.value.len() > 64
                || !commit.value.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            c.err(
                Pos::of(commit),
                format!("`source.commit` {:?} is not a commit id", commit.value),
                Some("write the full hexadecimal commit id".into()),
            );
        }
        for (field, b) in [("source.track", &s.track), ("source.push-to", &s.push_to)] {
            if let Some(b) = b
                && let Err(why) = branch_name(&b.value)
            {
                let short = b.value.strip_prefix("refs/heads/").unwrap_or(&b.value);
                c.err(
                    Pos::of(b),
                    format!("`{field}` {:?} is not a branch name: {why}", b.value),
                    (short != b.value && branch_name(short).is_ok())
                        .then(|| format!("write the branch's short name: `{short}`")),
                );
            }
        }
        Source {
            git: s.git.value.clone(),
            commit: s.commit.as_ref().map(|x| x.value.clone()),
            track: s.track.as_ref().map(|x| x.value.clone()),
            push_to: s.push_to.as_ref().map(|x| x.value.clone()),
        }
    });
    if let Some(s) = &doc.source
        && s.push_to.is_some()
        && s.commit.is_none()
    {
        c.err(Pos::of(&s.git), "`source.push-to` needs `source.commit`: the push gate advances the branch to the tested commit", None);
    }
    let watch = doc.watch.as_ref().map(|w| Watch {
        run: c.run("watch.run", &w.run),
        timeout: c.timeout("watch.timeout", &w.timeout),
    });
    let build = doc.build.as_ref().map(|b| build(&mut c, b));
    let version = version(&mut c, doc.version);
    let needs = c.needs("needs", &doc.needs);
    c.finish_named(Item {
        id: ItemId::new(ItemKind::Component, doc.name.value),
        version,
        description: doc.description,
        based_on: None,
        build,
        max_age: None,
        watch,
        source,
        needs,
    })
}

/// A test's `uses` entries are located references; `set` checks that they exist.
pub struct ParsedTest {
    pub test: Test,
    pub uses_at: Vec<Pos>,
    /// The repository paths the test names (its script, its `files`) and where.
    pub named: Vec<Named>,
}

pub fn parse_test(file: &str, bytes: &[u8]) -> Result<ParsedTest, Diagnostics> {
    let doc: TestDoc = from_yaml(file, bytes).map_err(|d| Diagnostics(vec![d]))?;
    let mut c = Check::new(file, bytes);
    c.name("test", &doc.name);
    c.name_matches_file(&doc.name);
    let mut uses = Vec::new();
    let mut uses_at = Vec::new();
    for u in &doc.uses {
        match ItemId::parse(&u.value) {
            Some(id) if uses.contains(&id) => {
                c.err(Pos::of(u), format!("{id} is listed twice in `uses`"), None)
            }
            Some(id) => {
                uses.push(id);
                uses_at.push(Pos::of(u));
            }
            None => c.err(
                Pos::of(u),
                format!("`uses` entry {:?} is not an item", u.value),
                Some("write images/NAME or components/NAME".into()),
            ),
        }
    }
    if doc.uses.is_empty() {
        c.err(
            Pos::FILE,
            "`uses` is empty: a test exercises at least one item",
            Some("e.g. `uses: [images/debian-host]`".into()),
        );
    }
    let run = c.run("run", &doc.run);
    let timeout = c.timeout("timeout", &doc.timeout);
    let retries = match &doc.retries {
        Some(r) if r.value > MAX_RETRIES => {
            c.err(
                Pos::of(r),
                format!(
                    "`retries` is {}; a test may retry at most {MAX_RETRIES} times",
                    r.value
                ),
                Some(
                    "a test that needs more retries than that is broken; fix it or drop it".into(),
                ),
            );
            r.value
        }
        Some(r) => r.value,
        None => 0,
    };
    let files = doc.files.iter().map(|f| c.rel_path("files", f)).collect();
    let needs = c.needs("needs", &doc.needs);
    let test = Test {
        name: doc.name.value,
        description: doc.description,
        uses,
        run,
        timeout,
        retries,
        files,
        needs,
    };
    let named = std::mem::take(&mut c.named);
    c.finish(ParsedTest {
        test,
        uses_at,
        named,
    })
}
