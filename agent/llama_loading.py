"""Loading a llama.cpp model: one entrance, so that what every load needs is decided once.

On a CPU with AMX (Intel Xeon from Sapphire Rapids on), ggml repacks a quantized model's
weights into an "AMX" buffer and multiplies them with AMX tiles. On some of these machines
that path crashes the process: on a 2-core cloud VM with AMX, the first decode of the default
model (SmolLM2 Q4_1, llama-cpp-python 0.3.36 built natively) died with a segmentation fault
every time, in ``llama_decode``. It is a known ggml fault, unfixed upstream (llama.cpp issue
#20824, "segfault in ggml_backend_amx_mul_mat"; ollama and others see it on Sapphire and
Granite Rapids VMs). A node that crashes at its first answer is worse than a slower one, so
where the CPU has AMX the weights stay in plain CPU memory: llama.cpp's ``use_extra_bufts``
off. That also turns off the repacking of Q4_0/Q4_K weights for AVX-512, a speed-up only.
Elsewhere nothing changes.

llama-cpp-python's ``Llama`` does not take ``use_extra_bufts``: it builds its model
parameters from ``llama_model_default_params()``, so that function is wrapped, once, for the
process (``keep_weights_off_amx``).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_c  # the module whose function Llama() calls

_installing = threading.Lock()


@functools.cache
def cpu_has_amx() -> bool:
    """Whether ggml would put weights in AMX buffers here (an AMX CPU, and a build that uses it)."""
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace")


def keep_weights_off_amx() -> bool:
    """Make every model this process loads from now on keep its weights out of AMX buffers,
    if the CPU has AMX. Idempotent; True when the guard is on."""
    if not cpu_has_amx():
        return False
    with _installing:
        defaults = llama_cpp_c.llama_model_default_params
        if getattr(defaults, "flurry_amx_off", False):
            return True

        @functools.wraps(defaults)
        def defaults_without_amx() -> llama_cpp_c.llama_model_params:
            params = defaults()
            params.use_extra_bufts = False
            return params

        defaults_without_amx.flurry_amx_off = True  # type: ignore[attr-defined]
        llama_cpp_c.llama_model_default_params = defaults_without_amx
    return True


def load_llama(**options: Any) -> llama_cpp.Llama:
    """``llama_cpp.Llama(**options)``, loaded so that it runs on this CPU (see the module)."""
    keep_weights_off_amx()
    return llama_cpp.Llama(**options)
