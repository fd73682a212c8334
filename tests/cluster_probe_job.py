"""The job that tests/test_cluster_smoke.py submits with `ray job submit --working-dir`: not a test itself.

One Ray task pinned to each node (through the node's custom resource) builds the same tiny ViT from a fixed seed and
runs it on a fixed batch; the driver logs one MLflow run recording which node ran what, the model's FLOPs and the
features it computed, and where `vit_model` was imported from (the shipped working directory, not an installed copy).

    python tests/cluster_probe_job.py --tracking-uri http://127.0.0.1:5000 --experiment probe \
        --node-resource harness_node_head --node-resource harness_node_worker
"""

from __future__ import annotations

import argparse

import mlflow
import ray
import torch

import vit_model

MODEL = "vit-pi/4"
IMAGE_SIZE = 32
NUM_CLASSES = 10
BATCH = 4
SEED = 1234


@ray.remote(num_cpus=1)
def tiny_vit_forward(model_name: str, seed: int) -> dict:
    """Build ``model_name`` from ``seed``, run it on a seeded batch, and report where and what it computed."""
    torch.manual_seed(seed)
    model = vit_model.create_model(model_name, num_classes=NUM_CLASSES, image_size=IMAGE_SIZE).eval()
    images = torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # pre-logits features: a fresh model's classifier is zero-initialised
        features = model.forward_head(model.forward_features(images), pre_logits=True).double()
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "features_sum": float(features.sum()),
        "features_abs_sum": float(features.abs().sum()),
        "forward_flops": vit_model.forward_flops(model),
        "vit_model_file": vit_model.__file__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking server, e.g. http://127.0.0.1:5000")
    parser.add_argument("--experiment", required=True, help="MLflow experiment to log the run to")
    parser.add_argument("--node-resource", action="append", required=True,
                        help="custom resource that pins a task to one node (repeat once per node)")
    args = parser.parse_args(argv)

    ray.init()  # the job's RAY_ADDRESS and authentication token come from the cluster
    tasks = {res: tiny_vit_forward.options(resources={res: 1}).remote(MODEL, SEED) for res in args.node_resource}
    results = {res: ray.get(ref) for res, ref in tasks.items()}

    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(args.experiment)
    with mlflow.start_run(run_name="placement-probe"):
        mlflow.log_params({"model": MODEL, "image_size": IMAGE_SIZE, "batch": BATCH, "seed": SEED})
        mlflow.set_tags({f"node_id.{res}": r["node_id"] for res, r in results.items()})
        mlflow.set_tag("driver_vit_model_file", vit_model.__file__)
        for step, res in enumerate(sorted(results)):
            r = results[res]
            mlflow.log_metrics({"features_sum": r["features_sum"], "features_abs_sum": r["features_abs_sum"],
                                "forward_flops": r["forward_flops"]}, step=step)
        mlflow.log_dict(results, "placement.json")
    print({res: r["node_id"] for res, r in results.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
