"""Offline checks of Vitrine's deployment files, for tests/e2e/deploy.rs.

  validate_k8s.py k8s --schemas DIR --kubernetes-version 1.32 LABEL=FILE...
      Validates every object of each rendered multi-document YAML: built-in
      kinds against the Kubernetes OpenAPI schemas that kubernetes-validate
      ships (strict: unknown fields are errors), custom kinds against
      DIR/<kind>-<group>-<version>.json. Prints {LABEL: [object, ...]} as JSON
      so the Rust test can cross-check the objects without a YAML parser.

  validate_k8s.py spin spin.toml
      Parses a Spin manifest (version 2) and checks that every component's
      `source` is the file its `[component.x.build] command` writes. Prints
      what it found as JSON.

Exit status 1 with the problems on stderr when anything is invalid.
"""

import argparse
import json
import pathlib
import re
import shlex
import sys
import tomllib


def fail(problems):
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    sys.exit(1)


def load_validators():
    try:
        import jsonschema
        import kubernetes_validate
        import yaml
    except ImportError as e:
        fail([
            f"{e.name} is missing from the test venv: run "
            "`.venv/bin/pip install -r tests/requirements.txt`"
        ])
    return jsonschema, kubernetes_validate, yaml


def custom_schema(schemas, obj):
    group, _, version = obj["apiVersion"].rpartition("/")
    name = f"{obj['kind'].lower()}-{group.split('.')[0]}-{version}.json"
    path = schemas / name
    return path if path.is_file() else None


def check_k8s(args):
    jsonschema, kv, yaml = load_validators()
    schemas = pathlib.Path(args.schemas)
    out, problems = {}, []
    for item in args.rendered:
        label, _, file = item.partition("=")
        docs = [d for d in yaml.safe_load_all(pathlib.Path(file).read_text()) if d]
        if not docs:
            problems.append(f"{label}: rendered no objects")
        for obj in docs:
            where = f"{label}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
            schema_file = custom_schema(schemas, obj)
            try:
                if schema_file:
                    schema = json.loads(schema_file.read_text())
                    jsonschema.Draft202012Validator.check_schema(schema)
                    jsonschema.Draft202012Validator(schema).validate(obj)
                else:
                    kv.validate(obj, args.kubernetes_version, strict=True)
            except jsonschema.ValidationError as e:
                path = ".".join(str(p) for p in e.absolute_path) or "(root)"
                problems.append(f"{where}: {path}: {e.message}")
            except kv.utils.SchemaNotFoundError:
                problems.append(
                    f"{where}: no schema for {obj['apiVersion']} {obj['kind']} in "
                    f"Kubernetes {args.kubernetes_version} nor in {schemas}"
                )
        out[label] = docs
    if problems:
        fail(problems)
    json.dump(out, sys.stdout)


def cargo_output(command):
    """The artifact `cargo build ... --target T -p P` writes, relative to the
    manifest, and the parts it was derived from."""
    argv = shlex.split(command)
    if argv[:2] != ["cargo", "build"]:
        raise ValueError(f"expected a `cargo build` command, got {command!r}")
    opts, i = {}, 2
    while i < len(argv):
        a = argv[i]
        if a in ("--target", "-p", "--package", "--target-dir", "--profile"):
            opts[a.lstrip("-")] = argv[i + 1]
            i += 2
        elif "=" in a and a.startswith("--"):
            k, v = a[2:].split("=", 1)
            opts[k] = v
            i += 1
        else:
            opts[a.lstrip("-")] = True
            i += 1
    package = opts.get("p") or opts.get("package")
    if not package or not opts.get("target"):
        raise ValueError(f"{command!r} must name its package (-p) and --target")
    profile = "release" if opts.get("release") else opts.get("profile", "debug")
    # Without --target-dir the output would follow $CARGO_TARGET_DIR, which
    # the manifest cannot know.
    if "target-dir" not in opts:
        raise ValueError(f"{command!r} needs --target-dir for a predictable output path")
    artifact = f"{opts['target']}/{profile}/{package.replace('-', '_')}.wasm"
    return {
        "argv": argv,
        "package": package,
        "target": opts["target"],
        "profile": profile,
        "target_dir": opts["target-dir"],
        "artifact_in_target_dir": artifact,
        "output": str(pathlib.PurePosixPath(opts["target-dir"]) / artifact),
    }


def build_output(command):
    """What a build command writes: a `cargo build` of the component, then
    optionally `cargo run -p vitrine -- preinit` on exactly that output."""
    steps = [step.strip() for step in command.split("&&")]
    built = cargo_output(steps[0])
    if len(steps) == 1:
        return built
    if len(steps) > 2:
        raise ValueError(f"expected at most two steps (build, preinit), got {len(steps)}")
    argv = shlex.split(steps[1])
    if "--" not in argv or argv[:2] != ["cargo", "run"]:
        raise ValueError(f"expected `cargo run ... -- preinit ...`, got {steps[1]!r}")
    cut = argv.index("--")
    runner, preinit = argv[:cut], argv[cut + 1:]
    if "vitrine" not in runner or not preinit or preinit[0] != "preinit":
        raise ValueError(f"the second step must run `vitrine preinit`, got {steps[1]!r}")
    opts = dict(zip(preinit[1::2], preinit[2::2]))
    if opts.get("--component") != built["output"]:
        raise ValueError(
            f"preinit takes --component {opts.get('--component')}, not what the build "
            f"writes ({built['output']})")
    if "--out" not in opts or "--model" not in opts:
        raise ValueError("preinit needs --model and --out")
    return {**built, "component": built["output"], "output": opts["--out"],
            "preinit_args": preinit}


def check_spin(args):
    manifest_path = pathlib.Path(args.manifest)
    root = manifest_path.parent
    manifest = tomllib.loads(manifest_path.read_text())
    problems = []
    if manifest.get("spin_manifest_version") != 2:
        problems.append("spin_manifest_version must be 2")
    if not manifest.get("application", {}).get("name"):
        problems.append("[application] needs a name")
    components = manifest.get("component", {})
    routes = []
    for trigger in manifest.get("trigger", {}).get("http", []):
        routes.append(trigger.get("route"))
        if trigger.get("component") not in components:
            problems.append(f"trigger {trigger.get('route')!r} names no defined component")
    app_vars = manifest.get("variables", {})
    for name, decl in app_vars.items():
        if not isinstance(decl, dict) or ("default" in decl) == bool(decl.get("required")):
            problems.append(f"variable {name}: needs exactly one of a default or required = true")
    found = {}
    for cid, comp in components.items():
        info = {
            "source": comp.get("source"),
            "files": comp.get("files", []),
            "environment": comp.get("environment", {}),
            "variables": comp.get("variables", {}),
        }
        build = comp.get("build", {})
        if not isinstance(comp.get("source"), str):
            problems.append(f"component {cid}: source must be a path")
        elif "command" not in build:
            problems.append(f"component {cid}: no [component.{cid}.build] command")
        else:
            try:
                built = build_output(build["command"])
            except ValueError as e:
                problems.append(f"component {cid}: {e}")
            else:
                info["build"] = built
                src = pathlib.PurePosixPath(comp["source"])
                if src != pathlib.PurePosixPath(built["output"]):
                    problems.append(
                        f"component {cid}: source {comp['source']} is not what its build "
                        f"command writes ({built['output']})"
                    )
                crate = root / "component" / "Cargo.toml"
                members = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["members"]
                packages = {
                    tomllib.loads((root / m / "Cargo.toml").read_text())["package"]["name"]: m
                    for m in members
                }
                if built["package"] not in packages:
                    problems.append(f"component {cid}: no workspace package {built['package']}")
                else:
                    crate = root / packages[built["package"]] / "Cargo.toml"
                    kinds = tomllib.loads(crate.read_text()).get("lib", {}).get("crate-type", [])
                    if "cdylib" not in kinds:
                        problems.append(f"component {cid}: {crate} builds no cdylib, so no .wasm")
            for var, template in comp.get("variables", {}).items():
                for used in re.findall(r"\{\{\s*([a-z0-9_]+)\s*\}\}", str(template)):
                    if used not in app_vars:
                        problems.append(f"component {cid}: variable {var} uses undeclared {used}")
            for w in build.get("watch", []):
                if not any(root.glob(w)):
                    problems.append(f"component {cid}: watch pattern {w!r} matches nothing")
        found[cid] = info
    if problems:
        fail(problems)
    json.dump({"name": manifest["application"]["name"], "routes": routes, "components": found,
               "variables": app_vars},
              sys.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    k8s = sub.add_parser("k8s")
    k8s.add_argument("--schemas", required=True)
    k8s.add_argument("--kubernetes-version", required=True)
    k8s.add_argument("rendered", nargs="+", help="LABEL=FILE of `kubectl kustomize` output")
    spin = sub.add_parser("spin")
    spin.add_argument("manifest")
    args = parser.parse_args()
    {"k8s": check_k8s, "spin": check_spin}[args.cmd](args)


if __name__ == "__main__":
    main()
