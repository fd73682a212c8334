"""The cluster files (cluster/) are valid for the tools that read them and agree with the project.

- aws-gpu.yaml passes Ray's own cluster-config validator (the schema that ships with the installed Ray);
- the KubeRay manifests carry what KubeRay requires, and the RayJob's cluster is the RayCluster;
- every `vit-study <command>` they (and the README section) run exists in the CLI, with existing configs;
- the Dockerfile pins the installed torch/torchvision/ray/mlflow and satisfies pyproject.toml;
- nothing is exposed outside the cluster, token authentication is on, and no file holds a credential.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import importlib.util
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import yaml
from packaging.requirements import Requirement

import vit_model

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER = CLUSTER / "aws-gpu.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
MLFLOW = CLUSTER / "mlflow" / "mlflow.yaml"
README_SECTION = CLUSTER / "README-section.md"
KUBERNETES_FILES = sorted((CLUSTER / "kuberay").glob("*.yaml")) + sorted((CLUSTER / "mlflow").glob("*.yaml"))
TEXT_FILES = sorted(p for p in CLUSTER.rglob("*") if p.is_file())


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(path: Path, kind: str) -> dict:
    docs = [d for d in _documents(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{path.name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _image_tag() -> str:
    return f"ghcr.io/vit-scaling/vit-study:{_pyproject()['project']['version']}"


# ------------------------------------------------------------------------------------------------- cluster launcher


def _validated_launcher_config(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_launcher_config_passes_rays_own_validator():
    prepared = _validated_launcher_config(yaml.safe_load(LAUNCHER.read_text()))  # raises if Ray rejects it
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("mutation", ["unknown top-level key", "string resource count", "head type not defined"])
def test_rays_validator_rejects_a_broken_launcher_config(mutation):
    # The check above is only worth something if the validator rejects what ray up would reject.
    import jsonschema

    config = yaml.safe_load(LAUNCHER.read_text())
    if mutation == "unknown top-level key":
        config["max_wrokers"] = 4
    elif mutation == "string resource count":
        config["available_node_types"][config["head_node_type"]]["resources"] = {"CPU": "0"}
    else:
        config["head_node_type"] = "no-such-node-type"
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        _validated_launcher_config(config)


def _ray_start_commands(config: dict) -> list[str]:
    commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    return [c for c in commands if "ray start" in c]


def test_launcher_cluster_is_private_authenticated_and_uses_the_project_image():
    config = yaml.safe_load(LAUNCHER.read_text())
    head_start = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
    assert len(head_start) == 1 and "--dashboard-host=127.0.0.1" in head_start[0]
    for command in _ray_start_commands(config):
        assert "0.0.0.0" not in command, command
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    # The token generated on the user's machine reaches every node.
    assert config["file_mounts"].get("~/.ray") == "~/.ray"
    assert config["docker"]["image"] == _image_tag()
    assert "--gpus all" in config["docker"]["worker_run_options"]
    # GPU workers scale from zero: an idle cluster costs only its head.
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert workers and all(t.get("min_workers", 0) == 0 < t["max_workers"] for t in workers)


# ------------------------------------------------------------------------------------------------- KubeRay


def _pod_containers(template: dict) -> list[dict]:
    containers = template["spec"]["containers"]
    assert containers, "a pod template needs a container"
    return containers


def test_raycluster_has_what_kuberay_requires():
    cluster = _one(RAYCLUSTER, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"]["name"] and cluster["metadata"]["namespace"] == "vit-study"
    spec = cluster["spec"]
    assert spec["rayVersion"] == importlib.metadata.version("ray")
    assert spec["authOptions"]["mode"] == "token"

    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    for container in _pod_containers(head["template"]):
        assert container["image"] == _image_tag()
        assert container["resources"]["limits"] and container["resources"]["requests"]

    assert spec["workerGroupSpecs"], "no worker group"
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        for container in _pod_containers(group["template"]):
            assert container["image"] == _image_tag()
            limits, wanted = container["resources"]["limits"], container["resources"]["requests"]
            # Kubernetes requires GPU requests == limits; KubeRay derives Ray's GPU count from the limit.
            assert int(limits["nvidia.com/gpu"]) >= 1
            assert wanted.get("nvidia.com/gpu") == limits["nvidia.com/gpu"]


def test_rayjob_runs_the_study_on_the_raycluster_spec():
    job = _one(RAYJOB, "RayJob")
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["namespace"] == "vit-study"
    assert job["spec"]["entrypoint"].startswith("vit-study study ")
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    # One cluster definition: the RayJob's own cluster may not drift from raycluster.yaml.
    assert job["spec"]["rayClusterSpec"] == _one(RAYCLUSTER, "RayCluster")["spec"]


def test_kubernetes_services_are_cluster_internal():
    for path in KUBERNETES_FILES:
        for doc in _documents(path):
            kind = doc["kind"]
            assert kind not in ("Ingress", "Secret"), f"{path.name}: {kind}"
            if kind == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{path.name}: {doc['metadata']}"
            if kind in ("RayCluster", "RayJob"):
                spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
                assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
                templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
            elif kind == "Deployment":
                templates = [doc["spec"]["template"]]
            else:
                continue
            for template in templates:
                assert not template["spec"].get("hostNetwork"), path.name
                for container in template["spec"]["containers"]:
                    assert all("hostPort" not in port for port in container.get("ports", [])), path.name


def test_mlflow_accepts_the_tracking_uri_the_study_is_given():
    from mlflow.server.security_utils import is_allowed_host_header

    uri = urlparse(_tracking_uri_of_rayjob())
    service = _one(MLFLOW, "Service")
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert uri.hostname in (f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local")
    assert uri.port in [p["port"] for p in service["spec"]["ports"]]

    args = _one(MLFLOW, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = [a.split("=", 1)[1] for a in args if a.startswith("--allowed-hosts=")]
    assert len(allowed) == 1
    # MLflow's own check: a worker's request (Host: <service>:<port>) must pass its DNS-rebinding protection.
    assert is_allowed_host_header(allowed[0].split(","), uri.netloc)
    assert is_allowed_host_header(allowed[0].split(","), "localhost:5000")  # the UI through port-forward


def _tracking_uri_of_rayjob() -> str:
    argv = shlex.split(_one(RAYJOB, "RayJob")["spec"]["entrypoint"])
    return argv[argv.index("--tracking-uri") + 1]


# ------------------------------------------------------------------------------------------------- entrypoints


def _joined_lines(text: str) -> list[str]:
    """Lines with shell continuations (also inside `#` comments) joined."""
    return re.sub(r"\\\s*\n\s*#?\s*", " ", text).splitlines()


_ENTRYPOINT = re.compile(r"(?:^\s*#?\s*|--\s+|entrypoint:\s*)vit-study\s+(?P<rest>.*)$")


def _vit_study_invocations() -> list[tuple[str, list[str]]]:
    """Every `vit-study ...` command line in cluster/ (manifests, launcher config, READMEs), as argv."""
    found = []
    for path in TEXT_FILES:
        if path.suffix not in (".yaml", ".md", "") and path.name != "Dockerfile":
            continue
        for line in _joined_lines(path.read_text()):
            if match := _ENTRYPOINT.search(line):
                command = re.split(r"\s(?:#|&&|\|\||;|\|)\s", match["rest"])[0]
                found.append((path.name, shlex.split(command.rstrip("`"))))
    return found


def test_cluster_files_run_vit_study_commands():
    where = {name for name, _ in _vit_study_invocations()}
    assert {RAYJOB.name, RAYCLUSTER.name, LAUNCHER.name, README_SECTION.name} <= where


@pytest.mark.parametrize("source,argv", _vit_study_invocations(),
                         ids=[f"{source}:{argv[0]}" for source, argv in _vit_study_invocations()])
def test_entrypoint_is_a_cli_command_with_an_existing_config(source, argv):
    from pipelines.cli import COMMANDS

    command, args = argv[0], argv[1:]
    assert command in COMMANDS, f"{source}: `vit-study {command}` is not a command ({sorted(COMMANDS)})"
    if "--config" in args:
        config = REPO / args[args.index("--config") + 1]
        assert config.is_file(), f"{source}: `vit-study {command}` runs {config.relative_to(REPO)}, which is missing"
    module_name = COMMANDS[command][0]
    if _module_exists(module_name):
        # The command exists: its own parser must accept the arguments the cluster passes.
        parser = argparse.ArgumentParser(prog=f"vit-study {command}", exit_on_error=False)
        importlib.import_module(module_name).add_arguments(parser)
        try:
            _, unknown = parser.parse_known_args(args)
        except (argparse.ArgumentError, SystemExit) as error:
            pytest.fail(f"{source}: `vit-study {command}` rejects {args}: {error}")
        assert not unknown, f"{source}: `vit-study {command}` does not accept {unknown}"


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its package does not exist (yet)
        return False


# ------------------------------------------------------------------------------------------------- image


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", (CLUSTER / "Dockerfile").read_text(), flags=re.M))


def test_dockerfile_pins_the_installed_versions_and_satisfies_pyproject():
    args = _dockerfile_args()
    pins = {"torch": args["TORCH_VERSION"], "torchvision": args["TORCHVISION_VERSION"],
            "ray": args["RAY_VERSION"], "mlflow": args["MLFLOW_VERSION"]}
    for package, version in pins.items():
        assert version == importlib.metadata.version(package), package
    assert args["TORCH_CUDA"] == "cu" + torch.version.cuda.replace(".", ""), "not the installed CUDA build"
    assert args["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"

    project = _pyproject()["project"]
    assert project["requires-python"] and Requirement(f"python{project['requires-python']}").specifier.contains(
        args["PYTHON_VERSION"] + ".0")
    requirements = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    for package, version in pins.items():
        assert requirements[package].specifier.contains(version), f"{package}=={version} vs {requirements[package]}"
    ray_extras = re.search(r'"ray\[([\w,]+)\]==\$\{RAY_VERSION\}"', (CLUSTER / "Dockerfile").read_text())
    assert ray_extras and set(ray_extras[1].split(",")) == requirements["ray"].extras


def test_every_dockerfile_pin_is_used_and_every_version_used_is_pinned():
    text = (CLUSTER / "Dockerfile").read_text()
    declared = set(_dockerfile_args())
    used = set(re.findall(r"\$\{(\w+)\}", text))
    assert used == declared


# ------------------------------------------------------------------------------------------------- runtime env


def test_runtime_env_is_valid_for_ray_and_ships_no_local_state():
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert set(env) <= RuntimeEnv.known_fields, set(env) - RuntimeEnv.known_fields
    RuntimeEnv(**env)  # Ray's own type checks
    assert "working_dir" not in env, "the working directory is given on the command line (--working-dir .)"
    assert {".git", ".venv"} <= set(env["excludes"])


# ------------------------------------------------------------------------------------------------- README


def test_readme_section_commands_match_the_cluster_files():
    text = README_SECTION.read_text()
    for path in set(re.findall(r"\bcluster/[\w./-]+\.(?:yaml|md)|cluster/Dockerfile", text)):
        assert (REPO / path).is_file(), path
    for line in _joined_lines(text):
        if "ray job submit --address" in line:
            assert "--working-dir . --runtime-env cluster/runtime_env.yaml" in line, line
    cluster = _one(RAYCLUSTER, "RayCluster")["metadata"]
    assert f"-n {cluster['namespace']} get secret {cluster['name']} " in text  # KubeRay's token Secret
    assert f"svc/{cluster['name']}-head-svc" in text
    assert f"--tracking-uri {_tracking_uri_of_rayjob()}" in text
    assert _image_tag() in text and _image_tag() in (CLUSTER / "Dockerfile").read_text()


def test_readme_cost_table_follows_the_flop_accounting():
    text = README_SECTION.read_text()
    rows = re.findall(r"^\| (ViT-[A-Z]+/\d+) \| ([\d.]+) \| ([\d.e+]+) \| ([\d,]+) \| ([\d,]+) \|$", text, re.M)
    assert len(rows) >= 3
    images = 14.2e6 * 90
    for name, gflops, train_flops, a100_hours, h100_hours in rows:
        with torch.device("meta"):
            model = vit_model.create_model(name.lower(), num_classes=21843, image_size=224)
        flops = vit_model.training_flops(vit_model.forward_flops(model), images)
        assert float(gflops) == round(vit_model.forward_flops(model) / 1e9, 1), name
        assert float(train_flops) == pytest.approx(flops, rel=0.05), name
        assert int(a100_hours.replace(",", "")) == round(flops / (312e12 * 0.40) / 3600), name
        assert int(h100_hours.replace(",", "")) == round(flops / (989e12 * 0.40) / 3600), name


# ------------------------------------------------------------------------------------------------- credentials

_SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "password in a URI": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:(?![<$])[^@\s/]+@"),
    "long hex token": re.compile(r"\b[0-9a-f]{32,}\b"),
    "secret assignment": re.compile(r"(?i)\b(?:password|passwd|secret_access_key|auth_token|api_key)\s*[:=]\s*"
                                    r"(?![\s\"']*(?:\$|<|$|\{))[\"']?[^\s\"']{6,}"),
}


def _secrets_in(text: str) -> list[str]:
    return [name for name, pattern in _SECRET_PATTERNS.items() if pattern.search(text)]


@pytest.mark.parametrize("leak", [
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "--backend-store-uri postgresql://mlflow:hunter2secret@db:5432/mlflow",
    "RAY_AUTH_TOKEN=3f5e2b7c9a1d4e6f8b0c2d4e6f8a0b1c3d5e7f9a",
    "password: hunter2secret",
])
def test_the_credential_scan_finds_credentials(leak):
    assert _secrets_in(leak)


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_no_credentials_in_cluster_files(path):
    assert _secrets_in(path.read_text()) == []


def test_kubernetes_credentials_come_from_secrets():
    for path in KUBERNETES_FILES:
        for doc in _documents(path):
            spec = doc.get("spec", {})
            templates = [spec.get("template")] if doc["kind"] == "Deployment" else []
            for template in templates:
                for container in template["spec"]["containers"]:
                    for var in container.get("env", []):
                        if re.search(r"PASSWORD|TOKEN|SECRET|KEY", var["name"]):
                            assert "valueFrom" in var and "value" not in var, f"{path.name}: {var['name']}"
