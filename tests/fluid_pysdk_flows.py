"""Fluid's own SDK (fluid-pysdk), as its documentation uses it: runs in the SDK's venv
(not this project's) against the API server named by the kubeconfig in argv[1], and
prints one JSON line of what it saw. Optional: argv[2] the script step's image
(``repository:tag``; alpine by default), argv[3] where the flow migrates the dataset to
(``local:///mnt/out`` by default), argv[4] the step's shell code."""

import json
import sys

from fluid import ClientConfig, FluidClient, constants, models
from kubernetes import client as k8s


def main() -> None:
    client = FluidClient(ClientConfig(namespace="default", runtime_kind=constants.VINEYARD_RUNTIME_KIND,
                                      kube_config_file=sys.argv[1]))
    client.create_dataset("demo")
    dataset = client.get_dataset("demo")
    dataset.bind_runtime(runtime_type=constants.VINEYARD_RUNTIME_KIND, replicas=2, cache_capacity_GiB=1,
                         cache_medium="MEM", wait=True)
    image, _, tag = (sys.argv[2] if len(sys.argv) > 2 else "alpine:3.18").rpartition(":")
    out = sys.argv[3] if len(sys.argv) > 3 else "local:///mnt/out"
    processor = models.Processor(script=models.ScriptProcessor(
        image=image, image_tag=tag, image_pull_policy="IfNotPresent", command=["sh"],
        source=sys.argv[4] if len(sys.argv) > 4 else "ls /data",
        volumes=[k8s.V1Volume(name="scratch", empty_dir=k8s.V1EmptyDirVolumeSource())],
        volume_mounts=[k8s.V1VolumeMount(name="scratch", mount_path="/scratch")]))
    flow = (dataset.preload("/")
            .process(dataset_mountpath="/data", processor=processor)
            .migrate("/", constants.DATA_MIGRATE_DIRECTION_TO, models.ExternalStorage(uri=out))
            .run(run_id="sdkflow"))
    flow.wait(timeout_for_each_step=float(sys.argv[5]) if len(sys.argv) > 5 else 60)
    phases = [next(iter(s.values())).phase for s in flow.get_current_status()]
    cache = dataset.report_status("cache")
    binding = dataset.report_status("binding_status")
    dataset.clean_up(wait=False)
    print(json.dumps({"phases": phases, "cache": cache, "bound": binding["phase"]}))


if __name__ == "__main__":
    main()
