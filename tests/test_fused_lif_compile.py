"""The CUDA source compiles to PTX for the target architectures, without a GPU.

``nvcc -ptx`` (skipped only where nvcc is absent) and NVRTC through CuPy's
program object (skipped without CuPy), each on the string the GPU path hands
to NVRTC (:func:`sj_ext.fused_lif.kernel_source`) with its options.
"""

import shutil
import subprocess

import pytest
import torch

from sj_ext.fused_lif.device import NVRTC_OPTIONS
from sj_ext.fused_lif.source import DTYPES, KernelConfig, kernel_signatures, kernel_source

ARCHS = ("sm_80", "sm_90")
#: every dtype, each projection, groups and no groups
CONFIGS = [
    KernelConfig(torch.float32),
    KernelConfig(torch.float64, 4, "sine"),
    KernelConfig(torch.float16, 4, "sine"),
    KernelConfig(torch.bfloat16, 2, "add"),
]


def _ids(config):
    return f"{str(config.dtype).split('.')[1]}-G{config.chain_length}-{config.projection}"


def test_configs_cover_every_dtype():
    assert {c.dtype for c in CONFIGS} == set(DTYPES)


def _check_ptx(ptx: str, arch: str):
    assert f".target {arch}" in ptx
    for name in kernel_signatures():
        assert f".entry {name}(" in ptx


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA toolkit) is not on PATH")
def test_nvcc_compiles_every_kernel_to_ptx(tmp_path):
    src = tmp_path / "sj_lif.cu"
    src.write_text(kernel_source())
    jobs = []
    for config in CONFIGS:
        for arch in ARCHS:
            out = tmp_path / f"{_ids(config)}-{arch}.ptx"
            cmd = ["nvcc", "-ptx", f"-arch={arch}", *NVRTC_OPTIONS, *config.defines()]
            cmd = [*cmd, str(src), "-o", str(out)]
            jobs.append((out, arch, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)))
    for out, arch, job in jobs:
        _, err = job.communicate()
        assert job.returncode == 0, f"{out.name}:\n{err}"
        _check_ptx(out.read_text(), arch)


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_nvrtc_compiles_every_kernel_to_ptx(config):
    nvrtc = pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="CuPy is not installed")
    for arch in ARCHS:
        program = nvrtc.createProgram(kernel_source(), "sj_lif.cu", [], [])
        options = [*NVRTC_OPTIONS, *config.defines(), f"-arch=compute_{arch[3:]}"]
        try:
            nvrtc.compileProgram(program, options)
        except nvrtc.NVRTCError as error:
            pytest.fail(f"{error}\n{nvrtc.getProgramLog(program)}")
        ptx = nvrtc.getPTX(program)
        _check_ptx(ptx.decode() if isinstance(ptx, bytes) else ptx, arch)


def test_config_checks():
    with pytest.raises(TypeError, match="int32"):
        KernelConfig(torch.int32)
    with pytest.raises(ValueError, match="projection"):
        KernelConfig(torch.float32, 4, "max")
    with pytest.raises(ValueError, match="chain_length"):
        KernelConfig(torch.float32, 4, "none")
    assert KernelConfig(torch.float16, 4, "sine").defines() == (
        "-DSJ_DTYPE=2",
        "-DSJ_G=4",
        "-DSJ_PROJ=2",
    )
