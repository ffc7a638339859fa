"""KubeRay manifests: rendered and committed ones validate; broken ones fail with a path."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import pytest
import yaml

from raymix import cli, k8s
from raymix.errors import RecipeError
from raymix.k8s import ClusterShape

REPO = Path(__file__).resolve().parents[1]
CRD_DIR = REPO.parent / "shared" / "data" / "kuberay-crds"

SHAPES = {
    "default": ClusterShape(),
    "no-pvc": ClusterShape(data_pvc=None),
    "fractional": ClusterShape(workers=3, worker_cpus=1.5, worker_memory_gib=1.5, head_cpus=0.5),
    "autoscaling": ClusterShape(workers=1, max_workers=4, service_account="raymix-sa"),
    "head-only": ClusterShape(workers=0, namespace="ml", image="registry.example/raymix:1"),
}


def _cluster_specs(manifest):
    spec = manifest["spec"]
    return spec["rayClusterSpec"] if manifest["kind"] == "RayJob" else spec


def _head_container(manifest):
    return _cluster_specs(manifest)["headGroupSpec"]["template"]["spec"]["containers"][0]


def _worker_group(manifest):
    return _cluster_specs(manifest)["workerGroupSpecs"][0]


def _job(shape=None, **options):
    shape = shape or ClusterShape()
    return k8s.render_rayjob("raymix-test", "recipes/movielens_lr.py", shape, **options)


# ------------------------------------------------------------------ valid manifests


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_rendered_manifests_validate(shape):
    k8s.validate_manifest(k8s.render_raycluster("raymix-test", shape), CRD_DIR)
    job = _job(
        shape,
        fit_args=["--overwrite"],
        runtime_env={"env_vars": {"RAYMIX_LOG": "info"}, "pip": ["glum"]},
    )
    k8s.validate_manifest(job, CRD_DIR)
    k8s.validate_manifest(_job(shape, shutdown_after_finish=False), CRD_DIR)


@pytest.mark.parametrize("filename", ["raycluster.yaml", "rayjob.yaml"])
def test_committed_examples_validate_and_match_render(filename):
    text = (REPO / "k8s" / filename).read_text(encoding="utf-8")
    k8s.validate_manifest(yaml.safe_load(text), CRD_DIR)
    assert text == k8s.example_manifests()[filename], "regenerate: python -m raymix.k8s"


def test_main_check_reports_drift(tmp_path):
    assert k8s.main(["--check", str(REPO / "k8s")]) == 0
    assert k8s.main(["--check", str(tmp_path)]) == 1
    assert k8s.main([str(tmp_path)]) == 0
    assert k8s.main(["--check", str(tmp_path)]) == 0


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_to_yaml_round_trips(shape):
    for manifest in (k8s.render_raycluster("raymix-test", shape), _job(shape)):
        assert yaml.safe_load(k8s.to_yaml(manifest)) == manifest
    job = _job(shape, runtime_env={"env_vars": {"A": "x: y"}, "working_dir": "s3://b/k.zip"})
    text = k8s.to_yaml(job)
    assert "runtimeEnvYAML: |" in text
    assert yaml.safe_load(text) == job


# ------------------------------------------------------------------ broken manifests


def _broken(edit, kind="RayJob"):
    manifest = _job() if kind == "RayJob" else k8s.render_raycluster("raymix-test", ClusterShape())
    manifest = copy.deepcopy(manifest)
    edit(manifest)
    with pytest.raises(RecipeError) as info:
        k8s.validate_manifest(manifest, CRD_DIR)
    return info.value


def test_wrong_type_for_replicas():
    error = _broken(lambda m: _worker_group(m).update(replicas="two"))
    assert str(error) == (
        "spec.rayClusterSpec.workerGroupSpecs[0].replicas: 'two' is not of type 'integer'"
    )
    assert error.field == "spec.rayClusterSpec.workerGroupSpecs[0].replicas"


@pytest.mark.parametrize("kind", ["RayJob", "RayCluster"])
def test_unknown_field_in_container(kind):
    error = _broken(lambda m: _head_container(m).update(cpu="2"), kind)
    prefix = "spec.rayClusterSpec." if kind == "RayJob" else "spec."
    assert error.field == prefix + "headGroupSpec.template.spec.containers[0].cpu"
    assert "unknown field" in str(error)


def test_unknown_top_level_and_metadata_fields():
    assert _broken(lambda m: m["spec"].update(entryPoint="x")).field == "spec.entryPoint"
    assert _broken(lambda m: m["metadata"].update(nmae="x")).field == "metadata.nmae"


def test_missing_group_name():
    error = _broken(lambda m: _worker_group(m).pop("groupName"))
    assert error.field == "spec.rayClusterSpec.workerGroupSpecs[0].groupName"
    assert "required" in str(error)


def test_missing_metadata_and_name():
    assert _broken(lambda m: m.pop("metadata")).field == "metadata"
    assert _broken(lambda m: m["metadata"].pop("name")).field == "metadata.name"


@pytest.mark.parametrize("name", ["Raymix_LR", "1raymix", "raymix-", "r" * 48, ""])
def test_invalid_metadata_name(name):
    error = _broken(lambda m: m["metadata"].update(name=name))
    assert error.field == "metadata.name"
    assert "DNS-1035" in str(error)


def test_raycluster_name_limit_is_53():
    k8s.validate_manifest(k8s.render_raycluster("r" * 53, ClusterShape()), CRD_DIR)
    error = _broken(lambda m: m["metadata"].update(name="r" * 54), kind="RayCluster")
    assert "at most 53" in str(error)


def test_wrong_api_version_and_kind():
    assert _broken(lambda m: m.update(apiVersion="ray.io/v1alpha1")).field == "apiVersion"
    assert _broken(lambda m: m.update(kind="RayService")).field == "kind"


def test_string_maps_quantities_int32_and_list_keys():
    head_params = lambda m: _cluster_specs(m)["headGroupSpec"]["rayStartParams"]  # noqa: E731
    error = _broken(lambda m: head_params(m).update({"num-cpus": 4}))
    assert str(error).startswith("spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: 4 is")

    limits = lambda m: _head_container(m)["resources"]["limits"]  # noqa: E731
    error = _broken(lambda m: limits(m).update(memory="8 GiB"))
    assert error.field.endswith("containers[0].resources.limits.memory")
    assert "not a Kubernetes quantity" in str(error)
    assert _broken(lambda m: limits(m).update(memory=2.5)).field.endswith("limits.memory")

    error = _broken(lambda m: m["spec"].update(ttlSecondsAfterFinished=2**31))
    assert error.field == "spec.ttlSecondsAfterFinished"

    error = _broken(lambda m: _head_container(m)["ports"].append({"containerPort": 8265}))
    assert error.field.endswith("containers[0].ports[3]")
    assert "duplicate" in str(error)


def test_first_problem_in_document_order_and_count():
    def edit(m):
        m["metadata"]["labels"]["bad"] = 1
        _worker_group(m).update(replicas="two")

    error = _broken(edit)
    assert error.field == "metadata.labels.bad"
    assert str(error).endswith("(and 1 more problem)")


def test_error_pickles_and_missing_crd_dir(tmp_path):
    error = _broken(lambda m: _worker_group(m).update(replicas="two"))
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.field) == (str(error), error.field)
    with pytest.raises(RecipeError, match="crd_dir"):
        k8s.validate_manifest(_job(), tmp_path)


# ------------------------------------------------------------------ rendering follows the shape


def test_rendering_follows_shape():
    shape = ClusterShape(
        workers=3,
        worker_cpus=1.5,
        worker_memory_gib=6,
        head_cpus=4,
        head_memory_gib=1.5,
        logical_cpus_factor=2.0,
    )
    for manifest in (k8s.render_raycluster("raymix-test", shape), _job(shape)):
        group = _worker_group(manifest)
        assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (3, 3, 3)
        assert group["groupName"] == k8s.WORKER_GROUP
        worker = group["template"]["spec"]["containers"][0]
        assert worker["name"] == "ray-worker"
        assert worker["resources"]["requests"] == {"cpu": "1500m", "memory": "6Gi"}
        assert worker["resources"]["limits"] == worker["resources"]["requests"]
        assert group["rayStartParams"]["num-cpus"] == "3"

        head_group = _cluster_specs(manifest)["headGroupSpec"]
        head = _head_container(manifest)
        assert head["name"] == "ray-head"
        assert head["resources"]["requests"] == {"cpu": "4", "memory": "1536Mi"}
        assert head_group["rayStartParams"]["num-cpus"] == "8"
        assert head_group["rayStartParams"]["dashboard-host"] == "0.0.0.0"
        assert sorted(p["containerPort"] for p in head["ports"]) == [6379, 8265, 10001]
        assert "enableInTreeAutoscaling" not in _cluster_specs(manifest)
        for container in (head, worker):
            assert {"name": "RAY_TRAIN_V2_ENABLED", "value": "1"} in container["env"]
            assert container["image"] == "raymix:0.1.0"
        assert _cluster_specs(manifest)["rayVersion"] == "2.60.0"


def test_logical_cpus_factor_one_matches_cores():
    shape = ClusterShape(worker_cpus=3, logical_cpus_factor=1)
    cluster = k8s.render_raycluster("raymix-test", shape)
    assert _worker_group(cluster)["rayStartParams"]["num-cpus"] == "3"


def test_shm_sized_for_object_store():
    shape = ClusterShape(worker_memory_gib=10, object_store_fraction=0.25)
    group = _worker_group(k8s.render_raycluster("raymix-test", shape))
    (shm,) = [v for v in group["template"]["spec"]["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "2560Mi"}
    assert group["rayStartParams"]["object-store-memory"] == str(2560 * 1024 * 1024)
    mounts = group["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in mounts


@pytest.mark.parametrize("pvc", ["raymix-data", None])
def test_pvc_present_or_absent(pvc):
    shape = ClusterShape(data_pvc=pvc, mount_path="/mnt/raymix")
    job = _job(shape)
    pods = [
        _cluster_specs(job)["headGroupSpec"]["template"]["spec"],
        _worker_group(job)["template"]["spec"],
    ]
    for pod in pods:
        claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        paths = [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]]
        if pvc is None:
            assert claims == [] and "/mnt/raymix" not in paths
            assert "securityContext" not in pod
        else:
            assert claims == [{"name": "data", "persistentVolumeClaim": {"claimName": pvc}}]
            assert "/mnt/raymix" in paths


def test_autoscaling_and_service_account():
    shape = ClusterShape(workers=1, max_workers=4, service_account="raymix-sa")
    cluster = k8s.render_raycluster("raymix-test", shape)
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    group = _worker_group(cluster)
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (1, 1, 4)
    assert group["template"]["spec"]["serviceAccountName"] == "raymix-sa"


def test_rayjob_entrypoint_runtime_env_and_lifecycle():
    job = _job(
        fit_args=["--output", "/data/out dir"],
        runtime_env={"env_vars": {"A": "1"}},
        ttl_seconds=30,
    )
    spec = job["spec"]
    assert spec["entrypoint"] == (
        "raymix fit /opt/raymix/recipes/movielens_lr.py --address auto --output '/data/out dir'"
    )
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"env_vars": {"A": "1"}}
    assert (spec["shutdownAfterJobFinishes"], spec["ttlSecondsAfterFinished"]) == (True, 30)
    assert spec["rayClusterSpec"] == k8s.render_raycluster("raymix-test", ClusterShape())["spec"]

    kept = _job(shutdown_after_finish=False, fit_args=["--address=ray://head:10001"])["spec"]
    assert kept["shutdownAfterJobFinishes"] is False and "ttlSecondsAfterFinished" not in kept
    assert "runtimeEnvYAML" not in kept
    assert kept["entrypoint"].endswith("movielens_lr.py --address=ray://head:10001")
    on_volume = k8s.render_rayjob("raymix-test", "/data/recipes/my.py", ClusterShape())
    assert on_volume["spec"]["entrypoint"].startswith("raymix fit /data/recipes/my.py ")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"workers": -1}, "ClusterShape.workers"),
        ({"workers": True}, "ClusterShape.workers"),
        ({"workers": 2, "max_workers": 1}, "ClusterShape.max_workers"),
        ({"worker_cpus": 0}, "ClusterShape.worker_cpus"),
        ({"head_memory_gib": float("nan")}, "ClusterShape.head_memory_gib"),
        ({"logical_cpus_factor": 0.5}, "ClusterShape.logical_cpus_factor"),
        ({"object_store_fraction": 0.9}, "ClusterShape.object_store_fraction"),
        ({"namespace": "My NS"}, "ClusterShape.namespace"),
        ({"data_pvc": "Data_PVC"}, "ClusterShape.data_pvc"),
        ({"mount_path": "data"}, "ClusterShape.mount_path"),
        ({"mount_path": "/dev/shm"}, "ClusterShape.mount_path"),
        ({"image": ""}, "ClusterShape.image"),
    ],
)
def test_shape_validates_itself(kwargs, field):
    with pytest.raises(RecipeError) as info:
        ClusterShape(**kwargs)
    assert info.value.field == field


def test_render_rejects_bad_names_and_arguments():
    with pytest.raises(RecipeError, match="at most 47"):
        k8s.render_rayjob("r" * 48, "recipes/x.py", ClusterShape())
    with pytest.raises(RecipeError) as info:
        k8s.render_raycluster("Bad_Name", ClusterShape())
    assert info.value.field == "name"
    with pytest.raises(RecipeError, match="fit_args"):
        _job(fit_args="--overwrite")
    with pytest.raises(RecipeError, match="ttl_seconds"):
        _job(ttl_seconds=-1)


# ------------------------------------------------------------------ writing


def test_render_for_recipe_writes_valid_files(tmp_path):
    out = tmp_path / "manifests"
    paths = k8s.render_for_recipe(
        "recipes/My Recipe.v2.py", out, ClusterShape(workers=4), ["--overwrite"], crd_dir=CRD_DIR
    )
    assert [p.name for p in paths] == ["raycluster.yaml", "rayjob.yaml"]
    assert sorted(os.listdir(out)) == ["raycluster.yaml", "rayjob.yaml"]  # no temp files left
    cluster, job = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in paths)
    assert cluster["metadata"]["name"] == job["metadata"]["name"] == "raymix-my-recipe-v2"
    assert _worker_group(job)["replicas"] == 4
    assert job["spec"]["entrypoint"].endswith("--address auto --overwrite")

    with pytest.raises(RecipeError, match="already exist"):
        k8s.render_for_recipe("recipes/My Recipe.v2.py", out, ClusterShape())
    k8s.render_for_recipe("recipes/My Recipe.v2.py", out, ClusterShape(), overwrite=True)
    assert _worker_group(yaml.safe_load(paths[1].read_text(encoding="utf-8")))["replicas"] == 2


def test_write_manifests_writes_nothing_when_invalid(tmp_path):
    with pytest.raises(RecipeError):
        k8s.write_manifests(tmp_path, "Bad_Name", "recipes/x.py", ClusterShape(), crd_dir=CRD_DIR)
    assert list(tmp_path.iterdir()) == []


def test_name_for_recipe_is_a_valid_rayjob_name():
    assert k8s.name_for_recipe("recipes/movielens_lr.py") == "raymix-movielens-lr"
    long_name = k8s.name_for_recipe("x/" + "a_" * 40 + ".py")
    assert len(long_name) <= 47 and not long_name.endswith("-")
    assert k8s.name_for_recipe("__.py") == "raymix"


def test_render_command_passes_overrides_to_the_jobs_fit(tmp_path, capsys):
    out = tmp_path / "manifests"
    argv = ["k8s", "render", "recipes/movielens_lr.py", "--out", str(out), "--workers", "3"]
    fit_args = ["--set", "passes=3", "--set", "output=/mnt/raymix/out dir", "--fit-overwrite"]
    env = ["--env", "RAYMIX_MOVIELENS=/mnt/raymix/movielens", "--env", "EMPTY="]
    assert cli.main(argv + fit_args + env) == 0
    job = yaml.safe_load((out / "rayjob.yaml").read_text())
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"]) == {
        "env_vars": {"RAYMIX_MOVIELENS": "/mnt/raymix/movielens", "EMPTY": ""}
    }
    assert job["spec"]["entrypoint"] == (
        "raymix fit /opt/raymix/recipes/movielens_lr.py --address auto "
        "--set passes=3 --set 'output=/mnt/raymix/out dir' --overwrite"
    )
    before = (out / "rayjob.yaml").read_text()
    assert cli.main(argv) == 2  # manifests there already: refused, left as they were
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "rayjob.yaml").read_text() == before
    assert cli.main(argv + ["--overwrite"]) == 0
    assert "--set" not in yaml.safe_load((out / "rayjob.yaml").read_text())["spec"]["entrypoint"]


def test_render_command_refuses_an_env_without_a_name(tmp_path, capsys):
    argv = ["k8s", "render", "recipes/movielens_lr.py", "--out", str(tmp_path), "--env", "=x"]
    assert cli.main(argv) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_render_mounts_no_volume_for_object_store_data_and_outputs(tmp_path):
    def render(out, *extra):
        argv = ["k8s", "render", "recipes/movielens_lr.py", "--out", str(out), *extra]
        assert cli.main(argv) == 0
        cluster = yaml.safe_load((out / "raycluster.yaml").read_text())
        pods = [cluster["spec"]["headGroupSpec"]] + cluster["spec"]["workerGroupSpecs"]
        return [sorted(v["name"] for v in pod["template"]["spec"]["volumes"]) for pod in pods]

    in_bucket = ["--env", "RAYMIX_MOVIELENS=s3://team-data/movielens"]
    bucket_out = ["--set", "output=s3://team-runs/movielens-lr"]
    assert render(tmp_path / "a", *in_bucket, *bucket_out) == [["dshm"], ["dshm"]]
    # any local path (here the recipe's default output) needs the shared volume
    assert render(tmp_path / "b", *in_bucket) == [["data", "dshm"], ["data", "dshm"]]
    assert render(tmp_path / "c") == [["data", "dshm"], ["data", "dshm"]]
    # an explicit claim wins
    mounted = render(tmp_path / "d", *in_bucket, *bucket_out, "--data-pvc", "mine")
    assert mounted == [["data", "dshm"], ["data", "dshm"]]


def test_render_says_what_it_wrote_and_warns_about_relative_paths(tmp_path, capsys):
    out = tmp_path / "manifests"
    argv = ["k8s", "render", "recipes/movielens_lr.py", "--out", str(out)]
    assert cli.main([*argv, "--set", "output=out/relative"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"wrote 2 manifests to {out}:"
    assert sorted(line.strip() for line in said[1:3]) == [
        str(out / "raycluster.yaml"),
        str(out / "rayjob.yaml"),
    ]
    assert said[3] == f"run the job: kubectl apply -f {out / 'rayjob.yaml'}"
    assert said[4].startswith("warning: the recipe's relative paths (out/relative")
    assert "/opt/raymix" in said[4]
    absolute = ["--env", "RAYMIX_MOVIELENS=s3://d/ml", "--set", "output=s3://r/x", "--overwrite"]
    assert cli.main([*argv, *absolute]) == 0
    assert "warning" not in capsys.readouterr().out


def test_render_note_shortens_a_long_list_of_relative_paths():
    note = k8s.write.render_note([Path("m/raycluster.yaml")], "m", list("abcde"), "/app")
    assert note.splitlines() == [
        "wrote 1 manifest to m:",
        "  m/raycluster.yaml",
        "warning: the recipe's relative paths (a, b, c and 2 more) are resolved inside the pods "
        "(from /app in the image), not here: make them exist there, or give absolute paths on "
        "the shared volume or object-store URIs",
    ]
