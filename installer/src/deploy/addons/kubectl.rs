//! kubectl on the host the addons are applied from, every call bounded by
//! `timeout`: waiting for /readyz, reading back content hashes, server-side
//! apply, the Established and rollout waits. A kubectl that fails or does not
//! finish in time is an error naming the host, the object and its stderr.

use super::objects::{AddonObject, ObjectKey, HASH_ANNOTATION};
use crate::exec::{sh_quote, Executor, Source};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Overrides the time-outs (seconds): waits get this, single calls at most 60s of it.
pub const TIMEOUT_ENV: &str = "FERRY_ADDONS_TIMEOUT";

/// The field manager ferry applies as.
pub const FIELD_MANAGER: &str = "ferry";

/// How long kubectl may take.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// One get or apply.
    pub call: Duration,
    /// /readyz, one CRD's Established condition, one rollout.
    pub wait: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            call: Duration::from_secs(60),
            wait: Duration::from_secs(300),
        }
    }
}

impl Bounds {
    /// The defaults, or [`TIMEOUT_ENV`] when set.
    pub fn from_env() -> Result<Bounds, String> {
        let Ok(s) = std::env::var(TIMEOUT_ENV) else {
            return Ok(Bounds::default());
        };
        let n: u64 = s.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            format!(
                "{TIMEOUT_ENV}={s:?} is not a number of seconds: unset it or give one, e.g. 300"
            )
        })?;
        Ok(Bounds {
            call: Duration::from_secs(n.min(60)),
            wait: Duration::from_secs(n),
        })
    }
}

/// The last lines of kubectl's stderr, on one line.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.trim().lines().collect();
    let t = lines[lines.len().saturating_sub(6)..].join(" | ");
    if t.is_empty() {
        "(no output on stderr)".into()
    } else {
        t
    }
}

pub struct Kubectl<'a> {
    exec: &'a Executor,
    /// `KUBECTL --kubeconfig KUBECONFIG`, quoted.
    base: String,
    kubeconfig: String,
    pub bounds: Bounds,
}

impl<'a> Kubectl<'a> {
    pub fn new(exec: &'a Executor, kubectl: &Path, kubeconfig: &Path, bounds: Bounds) -> Self {
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        Kubectl {
            exec,
            base: format!(
                "{} --kubeconfig {}",
                sh_quote(&kubectl.to_string_lossy()),
                sh_quote(&kubeconfig)
            ),
            kubeconfig,
            bounds,
        }
    }

    fn host(&self) -> &str {
        self.exec.host()
    }

    /// `timeout -k 5 SECS KUBECTL --kubeconfig K ARGS` (ARGS already quoted).
    fn bounded(&self, bound: Duration, args: &str) -> String {
        format!(
            "timeout -k 5 {} {} {args}",
            bound.as_secs().max(1),
            self.base
        )
    }

    /// Runs `kubectl ARGS` under `timeout`; `what` names the call and object.
    async fn call(
        &self,
        what: &str,
        args: &str,
        input: Option<Vec<u8>>,
        bound: Duration,
    ) -> Result<String, String> {
        // Tried again when kubectl could not reach the apiserver.
        let script = self.bounded(bound, args);
        let secs = bound.as_secs().max(1);
        let input = input.map(|b| Source::Bytes(Arc::from(b)));
        let guard = bound * 2 + Duration::from_secs(30);
        let mut attempt = 1;
        let out = loop {
            let out = tokio::time::timeout(guard, self.exec.run_with(&script, input.as_ref()))
                .await
                .map_err(|_| {
                    format!(
                        "{}: {what}: the host did not answer within {}s; check the SSH connection to it",
                        self.host(),
                        guard.as_secs()
                    )
                })?
                .map_err(|e| format!("{what}: {e}"))?;
            // Every call is a read or a server-side apply, so one that never
            // reached the apiserver (the VIP moving between [ex_lb] hosts
            // drops connections) is tried again.
            if out.code == 0 || attempt == CONNECT_ATTEMPTS || !never_connected(&out.stderr) {
                break out;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        match out.code {
            0 => Ok(out.stdout),
            124 | 137 => Err(format!(
                "{}: {what}: kubectl did not finish within {secs}s and was stopped ({}); check the apiserver and kubectl on {} ({TIMEOUT_ENV} sets the time-out)",
                self.host(),
                tail(&out.stderr),
                self.host()
            )),
            code => Err(format!(
                "{}: {what}: kubectl exited with {code}: {}",
                self.host(),
                tail(&out.stderr)
            )),
        }
    }

    /// Waits until the apiserver at `endpoint` (the kubeconfig's server) answers /readyz.
    pub async fn wait_ready(&self, endpoint: &str) -> Result<(), String> {
        let (wait, call) = (self.bounds.wait.as_secs(), self.bounds.call.as_secs());
        let script = format!(
            "end=$(($(date +%s)+{wait})); while :; do out=$(timeout -k 5 {call} {} get --raw /readyz 2>&1) && exit 0; \
             [ \"$(date +%s)\" -ge \"$end\" ] && break; sleep 2; done; printf '%s\\n' \"$out\" >&2; exit 1",
            self.base
        );
        let guard = self.bounds.wait + self.bounds.call + Duration::from_secs(30);
        let out = tokio::time::timeout(guard, self.exec.run(&script))
            .await
            .map_err(|_| {
                format!(
                    "{}: waiting for /readyz of {endpoint}: the host did not answer within {}s",
                    self.host(),
                    guard.as_secs()
                )
            })?
            .map_err(|e| e.to_string())?;
        if out.success() {
            return Ok(());
        }
        Err(format!(
            "{}: the apiserver at {endpoint} did not answer /readyz within {wait}s (kubectl --kubeconfig {}): {}; check kube-apiserver on the masters and the load balancer in front of them",
            self.host(),
            self.kubeconfig,
            tail(&out.stderr)
        ))
    }

    /// The content hash each of `objects` carries in the cluster ("" without
    /// the annotation); objects that do not exist are absent.
    pub async fn hashes(
        &self,
        objects: &[&AddonObject],
        stage: &str,
    ) -> Result<BTreeMap<ObjectKey, String>, String> {
        let items: Vec<Value> = objects
            .iter()
            .map(|o| {
                json!({"apiVersion": o.api_version, "kind": o.kind,
                            "metadata": {"name": o.name, "namespace": o.namespace}})
            })
            .collect();
        let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
        let what = format!(
            "kubectl get of the {} {stage} ({} ...)",
            objects.len(),
            objects.first().map(|o| o.id()).unwrap_or_default()
        );
        let out = self
            .call(
                &what,
                "get -f - -o json --ignore-not-found",
                Some(list.to_string().into_bytes()),
                self.bounds.call,
            )
            .await?;
        parse_hashes(&out).map_err(|e| format!("{}: {what}: {e}", self.host()))
    }

    /// `kubectl apply --server-side` of `objects` in one call. kubectl itself
    /// reads their YAML (`annotate --local -o json`, so ferry never decodes
    /// a value); ferry sets each object's content hash in that JSON and
    /// applies them as one List.
    pub async fn apply_all(&self, objects: &[&AddonObject], stage: &str) -> Result<(), String> {
        let Some(first) = objects.first() else {
            return Ok(());
        };
        let some = format!("the {} {stage} ({} ...)", objects.len(), first.id());
        let stream: Vec<&str> = objects.iter().map(|o| o.text.as_str()).collect();
        let annotate = format!(
            "annotate --local --overwrite -f - {} -o json",
            sh_quote(&format!("{HASH_ANNOTATION}=pending"))
        );
        let what = format!("kubectl annotate --local of {some}");
        let out = self
            .call(
                &what,
                &annotate,
                Some(stream.join("\n---\n").into_bytes()),
                self.bounds.call,
            )
            .await?;
        let list =
            with_hashes(&out, objects).map_err(|e| format!("{}: {what}: {e}", self.host()))?;
        let apply = format!(
            "apply --server-side --field-manager={} --force-conflicts -f -",
            sh_quote(FIELD_MANAGER)
        );
        let what = format!("kubectl apply --server-side of {some}");
        self.call(
            &what,
            &apply,
            Some(list.to_string().into_bytes()),
            self.bounds.call,
        )
        .await
        .map(drop)
    }

    /// A kubectl call that waits (bounded by `--timeout`), given ten seconds more.
    async fn wait_call(&self, what: &str, args: &str) -> Result<(), String> {
        self.call(what, args, None, self.bounds.wait + Duration::from_secs(10))
            .await
            .map(drop)
    }

    /// Waits for the Established condition of `crds`, in one kubectl call.
    pub async fn established(&self, crds: &[&AddonObject]) -> Result<(), String> {
        if crds.is_empty() {
            return Ok(());
        }
        let wait = self.bounds.wait.as_secs();
        let names: Vec<String> = crds
            .iter()
            .map(|o| sh_quote(&format!("crd/{}", o.name)))
            .collect();
        let args = format!(
            "wait --for=condition=Established --timeout={wait}s {}",
            names.join(" ")
        );
        let ids: Vec<String> = crds.iter().map(|o| o.describe()).collect();
        let what = format!(
            "waiting for {} to be Established (kubectl wait)",
            ids.join(", ")
        );
        self.wait_call(&what, &args).await
    }

    /// `kubectl rollout status` of a Deployment, DaemonSet or StatefulSet.
    pub async fn rollout(&self, o: &AddonObject, kind: &str) -> Result<(), String> {
        let wait = self.bounds.wait.as_secs();
        let mut args = format!(
            "rollout status {} --timeout={wait}s",
            sh_quote(&format!("{kind}/{}", o.name))
        );
        if let Some(ns) = &o.namespace {
            args.push_str(&format!(" -n {}", sh_quote(ns)));
        }
        let what = format!(
            "waiting for the rollout of {} (kubectl rollout status)",
            o.describe()
        );
        self.wait_call(&what, &args).await
    }
}

/// Content hashes from `kubectl get -o json`: one object, or a List of them, or nothing.
fn parse_hashes(out: &str) -> Result<BTreeMap<ObjectKey, String>, String> {
    let mut map = BTreeMap::new();
    if out.trim().is_empty() {
        return Ok(map);
    }
    let v: Value =
        serde_json::from_str(out).map_err(|e| format!("kubectl printed no JSON ({e})"))?;
    let items = match v.get("items").and_then(Value::as_array) {
        Some(items) if v["kind"] == "List" => items.clone(),
        _ => vec![v],
    };
    for o in items {
        let text = |p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_string);
        let api_version = text("/apiVersion").unwrap_or_default();
        let group = api_version
            .rsplit_once('/')
            .map_or(String::new(), |(g, _)| g.to_string());
        let key = (
            group,
            text("/kind").unwrap_or_default(),
            text("/metadata/namespace").filter(|s| !s.is_empty()),
            text("/metadata/name").unwrap_or_default(),
        );
        let hash = o
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(HASH_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        map.insert(key, hash);
    }
    Ok(map)
}

/// kubectl's JSON of `objects` (a stream of objects or Lists, in input
/// order), each given its content hash: one List to apply.
fn with_hashes(out: &str, objects: &[&AddonObject]) -> Result<Value, String> {
    let mut items = Vec::new();
    for v in serde_json::Deserializer::from_str(out).into_iter::<Value>() {
        let v = v.map_err(|e| format!("kubectl printed no JSON ({e})"))?;
        match v.get("items").and_then(Value::as_array) {
            Some(list) if v["kind"] == "List" => items.extend(list.iter().cloned()),
            _ => items.push(v),
        }
    }
    if items.len() != objects.len() {
        return Err(format!(
            "kubectl printed {} objects for the {} it was given",
            items.len(),
            objects.len()
        ));
    }
    for (item, o) in items.iter_mut().zip(objects) {
        let name = item.pointer("/metadata/name").and_then(Value::as_str);
        if item["kind"] != o.kind.as_str() || name != Some(o.name.as_str()) {
            return Err(format!(
                "kubectl printed {} {} where {} was expected",
                item["kind"],
                name.unwrap_or("(no name)"),
                o.describe()
            ));
        }
        let meta = item
            .as_object_mut()
            .and_then(|m| m.get_mut("metadata"))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("kubectl printed {} without metadata", o.describe()))?;
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[HASH_ANNOTATION] = Value::String(o.hash.clone());
    }
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// Tries of a kubectl call that could not reach the apiserver.
const CONNECT_ATTEMPTS: u32 = 3;

/// Whether kubectl failed before the apiserver answered: its messages for
/// a connection refused, reset or closed.
fn never_connected(stderr: &str) -> bool {
    stderr.contains("Unable to connect to the server")
        || (stderr.contains("The connection to the server") && stderr.contains("was refused"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_call_that_never_reached_the_apiserver_is_tried_again() {
        assert!(never_connected("Unable to connect to the server: https://10.0.0.250:8443: Remote end closed connection without response"));
        assert!(never_connected("The connection to the server 10.0.0.1:6443 was refused - did you specify the right host or port?"));
        assert!(!never_connected(
            "Error from server (Forbidden): configmaps is forbidden"
        ));
    }
    use super::*;

    #[test]
    fn each_object_gets_its_own_hash_in_kubectls_json() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: a\n  annotations: {x: y}\n";
        let objs = super::super::objects::parse(Path::new("/m.yaml"), text).unwrap();
        let refs: Vec<&AddonObject> = objs.iter().collect();
        let a = r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","annotations":{"ferry.io/content-hash":"pending"}}}"#;
        let b = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"a","annotations":{"x":"y","ferry.io/content-hash":"pending"}}}"#;
        // kubectl prints one object after the other; the stand-in prints a List.
        for out in [
            format!("{a}\n{b}\n"),
            format!(r#"{{"apiVersion":"v1","kind":"List","items":[{a},{b}]}}"#),
        ] {
            let list = with_hashes(&out, &refs).unwrap();
            let items = list["items"].as_array().unwrap();
            assert_eq!(items.len(), 2);
            assert_eq!(
                items[0]["metadata"]["annotations"][HASH_ANNOTATION],
                objs[0].hash
            );
            assert_eq!(
                items[1]["metadata"]["annotations"][HASH_ANNOTATION],
                objs[1].hash
            );
            assert_eq!(items[1]["metadata"]["annotations"]["x"], "y");
            assert_ne!(objs[0].hash, objs[1].hash);
        }
        let short = with_hashes(a, &refs).unwrap_err();
        assert!(short.contains("1 objects for the 2"), "{short}");
        let swapped = with_hashes(&format!("{b}\n{a}"), &refs).unwrap_err();
        assert!(
            swapped.contains("Namespace a (document 1 of /m.yaml)"),
            "{swapped}"
        );
    }

    #[test]
    fn hashes_from_one_object_a_list_or_nothing() {
        assert!(parse_hashes("").unwrap().is_empty());
        let one = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"n","annotations":{"ferry.io/content-hash":"h1"}}}"#;
        let m = parse_hashes(one).unwrap();
        let key = (
            "apps".to_string(),
            "Deployment".to_string(),
            Some("n".to_string()),
            "d".to_string(),
        );
        assert_eq!(m[&key], "h1");
        let list = format!(
            r#"{{"kind":"List","apiVersion":"v1","items":[{one},{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"n"}}}}]}}"#
        );
        let m = parse_hashes(&list).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[&(String::new(), "Namespace".into(), None, "n".into())],
            ""
        );
        assert!(parse_hashes("not json").is_err());
    }
}
