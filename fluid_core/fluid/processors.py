"""``make_processor_from_func`` (and ``create_processor``, its name in Fluid 1.0's
announcement): a Python function as a script processor, as Fluid's SDK builds it (the
function's source and a call to it, run by ``python3``)."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from fluid_core.fluid.models import Processor, ScriptProcessor

DEFAULT_BASE_IMAGE = "python:3.10"


def make_processor_from_func(process_func: Callable[..., Any], process_func_params: dict[str, Any] | None = None,
                             packages_to_install: list[str] | None = None, pip_index_url: str | None = None,
                             base_image: str = DEFAULT_BASE_IMAGE, debug_mode: bool = False,
                             **kwargs: Any) -> Processor:
    """A script processor running ``process_func(**process_func_params)`` in ``base_image``."""
    if not callable(process_func):
        raise ValueError(f"Process function must be callable, got function type: {type(process_func)}")
    code = textwrap.dedent(inspect.getsource(process_func))
    call = f"{process_func.__name__}(**{process_func_params!r})" if process_func_params else f"{process_func.__name__}()"
    program = f"{code}\n{call}\n"
    source = (f"set -e{'x' if debug_mode else ''}\n"
              # in a folder of its own, removed when the step ends (locally it is the host's /tmp)
              f"folder=$(mktemp -d)\ntrap 'rm -rf \"$folder\"' EXIT\nprogram=$folder/ephemeral_script.py\n"
              f"cat > \"$program\" <<'FLUIDV_EOF'\n{program}FLUIDV_EOF\n"
              f"python3 -u \"$program\"\n")
    if packages_to_install:  # installed by the step itself when it starts, as in Fluid's SDK
        index = f" --index-url {pip_index_url}" if pip_index_url else ""
        source = (f"python3 -m pip install {'' if debug_mode else '--quiet '}--no-warn-script-location{index} "
                  + " ".join(packages_to_install) + "\n" + source)
    image, _, tag = base_image.partition(":")
    return Processor(script=ScriptProcessor(command=["bash"], source=source, image=image, image_tag=tag or "latest",
                                            **kwargs))


def create_processor(process_func: Callable[..., Any], process_func_params: dict[str, Any] | None = None,
                     **kwargs: Any) -> Processor:
    """``make_processor_from_func`` under the name Fluid 1.0's announcement uses."""
    return make_processor_from_func(process_func, process_func_params, **kwargs)
