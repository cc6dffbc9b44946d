//! Deployment files, checked offline: every kustomization renders and its
//! objects validate against Kubernetes' schemas (and ours for SpinApp); the
//! HPA, Service and probes agree with the Deployment; the container args pass
//! `vitrine serve --check-config`; the probe paths answer on a real server;
//! spin.toml's component is the file its build command writes, and its
//! pre-initialization step runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::*;

/// Every kustomization, labelled as the assertions name it.
const KUSTOMIZATIONS: [(&str, &str); 5] = [
    ("base", "k8s/base"),
    ("gke", "k8s/overlays/gke"),
    ("minikube", "k8s/overlays/minikube"),
    ("hot-swap", "k8s/overlays/hot-swap"),
    ("spinkube", "k8s/overlays/spinkube"),
];

/// The Kubernetes version whose schemas the objects must satisfy: the
/// installed kubectl's minor. The preStop `sleep` action needs 1.30 or later.
const KUBERNETES_VERSION: &str = "1.32";

/// TF Serving flags the manifests may pass that vitrine accepts but does not
/// implement (it drops them with a warning). Any other dropped flag fails.
const ACCEPTED_UNIMPLEMENTED: [&str; 0] = [];

type Rendered = BTreeMap<String, Vec<Value>>;

/// The validated objects of every kustomization, or `None` without kubectl.
fn rendered() -> Option<&'static Rendered> {
    static RENDERED: OnceLock<Option<Rendered>> = OnceLock::new();
    RENDERED.get_or_init(render_and_validate).as_ref()
}

/// The skip message every kubectl-dependent test prints.
fn skip_without_kubectl(test: &str) -> Option<&'static Rendered> {
    let r = rendered();
    if r.is_none() {
        eprintln!(
            "SKIPPED {test}: kubectl is not on PATH, so the Kubernetes manifests were not \
             rendered or checked. Install kubectl (it bundles kustomize) to run this test."
        );
    }
    r
}

fn render_and_validate() -> Option<Rendered> {
    match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run kubectl: {e}"),
        Ok(out) => assert!(out.status.success(), "kubectl version failed: {out:?}"),
    }
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut labelled = Vec::new();
    for (label, path) in KUSTOMIZATIONS {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root.join(path))
            .output()
            .expect("run kubectl kustomize");
        assert!(
            out.status.success(),
            "kubectl kustomize {path} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = dir.path().join(format!("{label}.yaml"));
        std::fs::write(&file, &out.stdout).expect("write rendered yaml");
        labelled.push(format!("{label}={}", file.display()));
    }
    let json = run_validator(
        &[
            "k8s",
            "--schemas",
            root.join("k8s/schemas").to_str().expect("utf-8 path"),
            "--kubernetes-version",
            KUBERNETES_VERSION,
        ],
        &labelled,
    );
    Some(serde_json::from_value(json).expect("objects per kustomization"))
}

/// Runs tests/reference/validate_k8s.py; panics with its findings if it fails.
fn run_validator(args: &[&str], more: &[String]) -> Value {
    let out = Command::new(python())
        .arg(workspace_root().join("tests/reference/validate_k8s.py"))
        .args(args)
        .args(more)
        .output()
        .expect("run validate_k8s.py");
    assert!(
        out.status.success(),
        "validate_k8s.py {} found problems:\n{}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("validator prints JSON")
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str, label: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "{label}: expected one {kind}");
    found[0]
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().expect("metadata.name")
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container: vitrine");
    &containers[0]
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The value of `--name=value` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("--{name}=")))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
}

/// A CPU quantity in cores: "2", "1.5" or "1500m".
fn cores(q: &Value) -> f64 {
    let s = match q {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match s.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().expect("millicores") / 1000.0,
        None => s.parse().unwrap_or_else(|_| panic!("CPU quantity {s:?}")),
    }
}

#[test]
fn deploy_manifests_render_and_validate_against_kubernetes_schemas() {
    let Some(rendered) =
        skip_without_kubectl("deploy_manifests_render_and_validate_against_kubernetes_schemas")
    else {
        return;
    };
    for (label, _) in KUSTOMIZATIONS {
        assert!(rendered.contains_key(label), "{label} was not rendered");
    }
    for label in ["base", "gke", "minikube", "hot-swap"] {
        let objects = &rendered[label];
        one(objects, "Deployment", label);
        one(objects, "HorizontalPodAutoscaler", label);
        let service = one(objects, "Service", label);
        let want = match label {
            "gke" => "LoadBalancer",
            "minikube" => "NodePort",
            _ => "ClusterIP",
        };
        assert_eq!(service["spec"]["type"], want, "{label}: Service type");
    }

    // hot-swap: the model repository is a claim, mounted read-only at /models.
    let objects = &rendered["hot-swap"];
    let pvc = one(objects, "PersistentVolumeClaim", "hot-swap");
    let pod = &one(objects, "Deployment", "hot-swap")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["persistentVolumeClaim"]["claimName"] == name(pvc))
        .expect("a volume from the model claim");
    let c = container(one(objects, "Deployment", "hot-swap"));
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the model volume is mounted");
    assert_eq!(mount["mountPath"], "/models");
    assert_eq!(mount["readOnly"], true);
    let a = args(c);
    assert!(
        flag(&a, "model_base_path").is_some_and(|p| p.starts_with("/models/")),
        "hot-swap serves from the claim: {a:?}"
    );
    assert!(flag(&a, "file_system_poll_wait_seconds").is_some(), "{a:?}");

    // spinkube: the component alone, no vitrine host.
    let objects = &rendered["spinkube"];
    assert!(
        of_kind(objects, "Deployment").is_empty(),
        "no host Deployment"
    );
    assert!(
        of_kind(objects, "Service").is_empty(),
        "the operator makes it"
    );
    let app = one(objects, "SpinApp", "spinkube");
    assert_eq!(app["spec"]["executor"], "containerd-shim-spin");
    assert_eq!(app["spec"]["enableAutoscaling"], true);
    assert!(
        app["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                app["spec"]["resources"][kind][res].is_string(),
                "SpinApp {kind}.{res}: HPA utilization needs requests, scaffold sets limits"
            );
        }
    }
    // The model is inside the pre-initialized component: nothing to mount.
    assert!(app["spec"].get("volumes").is_none(), "{app}");
    assert!(app["spec"].get("volumeMounts").is_none(), "{app}");
    // The component's own probes (tests/e2e/wasmtime_serve.rs runs them).
    use vitrine_component::service::{HEALTHZ_PATH, READYZ_PATH};
    let checks = &app["spec"]["checks"];
    assert_eq!(checks["readiness"]["httpGet"]["path"], READYZ_PATH);
    assert_eq!(checks["liveness"]["httpGet"]["path"], HEALTHZ_PATH);
    // Every variable it sets is one spin.toml declares.
    let spin = run_validator(
        &[
            "spin",
            workspace_root()
                .join("spin.toml")
                .to_str()
                .expect("utf-8 path"),
        ],
        &[],
    );
    let variables = app["spec"]["variables"].as_array().expect("variables");
    assert!(!variables.is_empty(), "the SpinApp sets the request limits");
    for v in variables {
        let name = v["name"].as_str().expect("variable name");
        assert!(
            spin["variables"].get(name).is_some(),
            "SpinApp variable {name} is not in spin.toml's [variables]"
        );
        assert!(v["value"].is_string(), "{v}");
    }
}

#[test]
fn deploy_hpa_and_services_match_their_workloads() {
    let Some(rendered) = skip_without_kubectl("deploy_hpa_and_services_match_their_workloads")
    else {
        return;
    };
    for (label, objects) in rendered {
        let deployments = of_kind(objects, "Deployment");
        // The spin-operator names the Deployment it creates after the SpinApp.
        let spin_apps = of_kind(objects, "SpinApp");
        let hpas = of_kind(objects, "HorizontalPodAutoscaler");
        assert_eq!(hpas.len(), 1, "{label}: one HPA");
        for hpa in hpas {
            let spec = &hpa["spec"];
            let target = &spec["scaleTargetRef"];
            assert_eq!(target["apiVersion"], "apps/v1", "{label}");
            assert_eq!(target["kind"], "Deployment", "{label}");
            let targets: Vec<&str> = deployments
                .iter()
                .chain(&spin_apps)
                .map(|o| name(o))
                .collect();
            assert!(
                targets.contains(&target["name"].as_str().unwrap_or_default()),
                "{label}: HPA {} targets {}, not one of {targets:?}",
                name(hpa),
                target["name"]
            );
            assert_eq!(
                (&spec["minReplicas"], &spec["maxReplicas"]),
                (&1.into(), &3.into())
            );
            let cpu = spec["metrics"]
                .as_array()
                .expect("metrics")
                .iter()
                .find(|m| m["resource"]["name"] == "cpu")
                .unwrap_or_else(|| panic!("{label}: HPA scales on CPU"));
            assert_eq!(cpu["resource"]["target"]["type"], "Utilization");
            assert_eq!(cpu["resource"]["target"]["averageUtilization"], 80);
        }

        for service in of_kind(objects, "Service") {
            let selector = service["spec"]["selector"].as_object().expect("selector");
            let d = deployments
                .iter()
                .find(|d| {
                    let labels = &d["spec"]["template"]["metadata"]["labels"];
                    selector.iter().all(|(k, v)| &labels[k] == v)
                })
                .unwrap_or_else(|| panic!("{label}: Service {} selects no pods", name(service)));
            let ports = container(d)["ports"].as_array().expect("container ports");
            for port in service["spec"]["ports"].as_array().expect("service ports") {
                let target = &port["targetPort"];
                let hit = ports.iter().find(|p| match target {
                    Value::String(n) => &p["name"] == n,
                    Value::Number(_) => &p["containerPort"] == target,
                    _ => p["containerPort"] == port["port"],
                });
                let hit = hit.unwrap_or_else(|| {
                    panic!("{label}: Service port {port} matches no container port in {ports:?}")
                });
                assert_eq!(hit["name"], port["name"], "{label}: port names agree");
                assert_eq!(
                    hit["protocol"].as_str().unwrap_or("TCP"),
                    port["protocol"].as_str().unwrap_or("TCP")
                );
            }
        }
    }
    // The blog's layout: 8500 is gRPC, 8501 REST.
    let c = container(one(&rendered["base"], "Deployment", "base"));
    let a = args(c);
    for (port, name, flag_name) in [(8500, "grpc", "port"), (8501, "rest", "rest_api_port")] {
        let declared = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name);
        assert_eq!(declared.map(|p| &p["containerPort"]), Some(&port.into()));
        assert_eq!(flag(&a, flag_name), Some(port.to_string().as_str()));
    }
}

#[test]
fn deploy_pods_are_locked_down_sized_per_instance_and_drain_in_time() {
    let Some(rendered) =
        skip_without_kubectl("deploy_pods_are_locked_down_sized_per_instance_and_drain_in_time")
    else {
        return;
    };
    for (label, objects) in rendered {
        for d in of_kind(objects, "Deployment") {
            let pod = &d["spec"]["template"]["spec"];
            let c = container(d);
            let a = args(c);
            assert!(
                d["spec"].get("replicas").is_none(),
                "{label}: the HPA owns replicas"
            );

            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{label}");
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{label}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{label}");
            assert_eq!(
                sc["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{label}"
            );

            let rest = c["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .find(|p| p["name"] == "rest")
                .expect("rest port");
            for (probe, path) in [
                ("startupProbe", "/readyz"),
                ("readinessProbe", "/readyz"),
                ("livenessProbe", "/healthz"),
            ] {
                let get = &c[probe]["httpGet"];
                assert_eq!(get["path"], path, "{label}: {probe}");
                assert!(
                    get["port"] == rest["name"] || get["port"] == rest["containerPort"],
                    "{label}: {probe} must hit the REST port"
                );
            }
            // Room for a Cranelift compile when the image runs on another CPU.
            let startup = &c["startupProbe"];
            let budget = startup["periodSeconds"].as_u64().unwrap_or(10)
                * startup["failureThreshold"].as_u64().unwrap_or(3);
            assert!(budget >= 300, "{label}: startup budget {budget} s");

            // SIGTERM comes after preStop; the drain must end before SIGKILL.
            let drain: u64 = flag(&a, "drain_timeout_seconds")
                .unwrap_or("30")
                .parse()
                .expect("drain seconds");
            let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or(0);
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
            assert!(
                grace > pre_stop + drain,
                "{label}: grace {grace} s must exceed preStop {pre_stop} s + drain {drain} s"
            );

            // One single-threaded instance per requested core, and one async
            // worker more than instances for the health endpoints.
            let instances: u64 = flag(&a, "tensorflow_inter_op_parallelism")
                .expect("instances are set explicitly: 0 would follow the node's cores")
                .parse()
                .expect("instances");
            let req = &c["resources"]["requests"];
            assert_eq!(cores(&req["cpu"]), instances as f64, "{label}: CPU request");
            assert_eq!(req, &c["resources"]["limits"], "{label}: Guaranteed QoS");
            let workers: u64 = env(c, "TOKIO_WORKER_THREADS")
                .expect("TOKIO_WORKER_THREADS")
                .parse()
                .expect("workers");
            assert!(workers > instances, "{label}: {workers} workers");
            assert_eq!(env(c, "VITRINE_CACHE_DIR"), Some("/cache"), "{label}");
        }
    }
}

/// Runs `vitrine serve ARGS --check-config`; returns (success, stdout, stderr).
fn check_config(args: &[String]) -> (bool, String, String) {
    let out = vitrine()
        .arg("serve")
        .args(args)
        .arg("--check-config")
        .output()
        .expect("run vitrine serve --check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `args` with the model base path pointed at a real repository here.
fn local_args(args: &[String], repo: &Path) -> Vec<String> {
    args.iter()
        .map(|a| match a.strip_prefix("--model_base_path=") {
            Some(_) => format!("--model_base_path={}", repo.display()),
            None => a.clone(),
        })
        .collect()
}

fn assert_args_accepted(what: &str, args: &[String], repo: &Path) {
    let (ok, stdout, stderr) = check_config(&local_args(args, repo));
    assert!(ok, "{what}: --check-config rejected {args:?}:\n{stderr}");
    let resolved: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{what}: --check-config printed no JSON ({e}):\n{stdout}"));
    assert_eq!(
        resolved["model_name"],
        flag(args, "model_name").unwrap_or("hf-vit"),
        "{what}"
    );
    assert_eq!(resolved["grpc_port"], 8500, "{what}");
    assert!(
        resolved["rest_api"]
            .as_str()
            .is_some_and(|r| r.ends_with(":8501")),
        "{what}: {resolved}"
    );
    assert_eq!(resolved["versions_found"], serde_json::json!([1]), "{what}");
    if let Some(n) = flag(args, "tensorflow_inter_op_parallelism") {
        assert_eq!(resolved["instances_per_version"].to_string(), n, "{what}");
    }
    if let Some(n) = flag(args, "drain_timeout_seconds") {
        assert_eq!(resolved["drain_timeout_seconds"].to_string(), n, "{what}");
    }
    if let Some(n) = flag(args, "file_system_poll_wait_seconds") {
        assert_eq!(
            resolved["file_system_poll_wait_seconds"].to_string(),
            n,
            "{what}"
        );
    }
    // Every flag is implemented, or on the short list of known no-ops.
    for line in stderr.lines().filter(|l| l.contains("ignoring flag")) {
        assert!(
            ACCEPTED_UNIMPLEMENTED.iter().any(|f| line.contains(f)),
            "{what}: vitrine drops a flag the manifests rely on: {line}"
        );
    }
}

/// The Dockerfile's default arguments (its exec-form CMD).
fn dockerfile_cmd() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("Dockerfile")).expect("Dockerfile");
    assert!(
        text.lines()
            .any(|l| l.trim() == r#"ENTRYPOINT ["/vitrine", "serve"]"#),
        "the image's entrypoint is `vitrine serve`"
    );
    let cmd = text
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("CMD "))
        .expect("a CMD line");
    serde_json::from_str(cmd).expect("exec-form CMD")
}

#[test]
fn deploy_container_args_pass_check_config() {
    let repo = tiny_repo();
    // The check must be able to fail, or passing it means nothing.
    let (ok, _, _) = check_config(&["--rest_api_port=eighty".to_string()]);
    assert!(!ok, "--check-config accepted a non-numeric port");
    let (ok, _, stderr) = check_config(&[format!(
        "--model_base_path={}",
        repo.join("no-such-dir").display()
    )]);
    assert!(!ok, "--check-config accepted a missing model base path");
    assert!(stderr.contains("no-such-dir"), "{stderr}");

    assert_args_accepted("Dockerfile CMD", &dockerfile_cmd(), &repo);

    let Some(rendered) = skip_without_kubectl("deploy_container_args_pass_check_config") else {
        return;
    };
    for (label, objects) in rendered {
        for d in of_kind(objects, "Deployment") {
            assert_args_accepted(label, &args(container(d)), &repo);
        }
    }
}

#[test]
fn deploy_probe_paths_answer_200_on_a_ready_server() {
    let Some(rendered) = skip_without_kubectl("deploy_probe_paths_answer_200_on_a_ready_server")
    else {
        return;
    };
    let c = container(one(&rendered["base"], "Deployment", "base"));
    // The server harness sets ports, host, model name and path itself.
    let own = [
        "port",
        "rest_api_port",
        "rest_api_host",
        "model_name",
        "model_base_path",
    ];
    let extra: Vec<String> = args(c)
        .into_iter()
        .filter(|a| !own.iter().any(|f| a.starts_with(&format!("--{f}="))))
        .collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = Server::start("hf-vit", &tiny_repo(), &extra);
    let mut paths: Vec<String> = ["startupProbe", "readinessProbe", "livenessProbe"]
        .iter()
        .map(|p| {
            c[p]["httpGet"]["path"]
                .as_str()
                .expect("probe path")
                .to_string()
        })
        .collect();
    // SpinKube's checks use the same paths, answered there by the component
    // itself (tests/e2e/wasmtime_serve.rs).
    let app = one(&rendered["spinkube"], "SpinApp", "spinkube");
    for check in ["readiness", "liveness"] {
        if let Some(p) = app["spec"]["checks"][check]["httpGet"]["path"].as_str() {
            paths.push(p.to_string());
        }
    }
    for path in paths {
        let (status, body) = server.get(&path);
        assert_eq!(status, 200, "GET {path} on a ready server: {body}");
    }
}

#[test]
fn deploy_spin_manifest_sources_are_what_the_build_commands_write() {
    let root = workspace_root();
    let spin = run_validator(
        &["spin", root.join("spin.toml").to_str().expect("utf-8 path")],
        &[],
    );
    // One route: the component answers /v1, /v2, the probes, and 404s the rest.
    assert_eq!(
        spin["routes"],
        serde_json::json!(["/..."]),
        "spin.toml routes"
    );
    let components = spin["components"].as_object().expect("components");
    assert!(!components.is_empty(), "spin.toml has components");
    for (id, c) in components {
        let built = &c["build"];
        let argv: Vec<&str> = built["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        // Spin provides no wasi:nn: the build must not import it. It reads
        // the limits from Spin's variables, which spin.toml declares.
        let features: Vec<&str> = argv
            .iter()
            .filter_map(|a| a.strip_prefix("--features="))
            .flat_map(|f| f.split(','))
            .collect();
        assert_eq!(features, ["spin-variables"], "{id}: {argv:?}");
        for var in [
            "max_instances",
            "max_json_depth",
            "max_image_pixels",
            "max_image_dimension",
        ] {
            assert_eq!(
                c["variables"][var],
                format!("{{{{ {var} }}}}"),
                "{id}: component variable {var} from the application's"
            );
            assert!(
                spin["variables"][var].is_object(),
                "spin.toml declares [variables] {var}"
            );
        }
        let Some(preinit) = built["preinit_args"].as_array() else {
            // A plain build loads the model per instance from a mounted folder.
            let dir = c["environment"]["VITRINE_MODEL_DIR"]
                .as_str()
                .unwrap_or("/model");
            let mounts = c["files"].as_array().expect("files");
            assert!(
                mounts.iter().any(|f| f["destination"] == dir),
                "{id}: no files entry mounts {dir}"
            );
            continue;
        };
        // The second step, run for real with the tiny model in place of
        // models/hf-vit/1 and the first step's build in place of its output:
        // vitrine accepts its flags and writes a component.
        let out = fresh_dir("spin-build");
        let mut args: Vec<String> = Vec::new();
        let mut it = preinit.iter().filter_map(|a| a.as_str());
        while let Some(arg) = it.next() {
            // The paths this machine has in place of the manifest's.
            let local = match arg {
                "--component" => spin_variables_component(),
                "--model" => tiny_version(0),
                "--out" => out.path().join("c.wasm"),
                other => {
                    args.push(other.to_string());
                    continue;
                }
            };
            it.next()
                .unwrap_or_else(|| panic!("{id}: no value after {arg}"));
            args.extend([arg.to_string(), local.display().to_string()]);
        }
        let status = vitrine().args(&args).status().expect("run vitrine preinit");
        assert!(
            status.success(),
            "{id}: `vitrine {}` failed",
            args.join(" ")
        );
        let bytes =
            std::fs::read(out.path().join("c.wasm")).expect("the pre-initialized component");
        // A component, not a core module: magic, then version 0x0d, layer 1.
        assert_eq!(
            &bytes[..8],
            b"\0asm\x0d\x00\x01\x00",
            "{id}: not a wasm component"
        );
    }
}
