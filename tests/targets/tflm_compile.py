"""Compiling what edgekit writes for TFLite Micro (artifacts/<row>.cc and .h) as a firmware would.

Against TFLite Micro's own headers where they are at hand: ``EDGEKIT_TFLM_INCLUDE`` names the
include folders (``os.pathsep``-separated: a tflite-micro source tree, flatbuffers' include/ at
the version its schema asserts, gemmlowp); neither the tflite-micro wheel nor a Debian package
ships them, so by default against the stand-in header in tflm_stub/, which declares the same Add
methods and behaves as the real resolver does when they are called (see its comment).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

STUB = Path(__file__).parent / "tflm_stub"


def compiler() -> str | None:
    return shutil.which("g++") or shutil.which("clang++")


def real_includes() -> list[str]:
    """TFLite Micro's own include folders, from EDGEKIT_TFLM_INCLUDE; empty when not set."""
    return [d for d in os.environ.get("EDGEKIT_TFLM_INCLUDE", "").split(os.pathsep) if d]


def syntax_check(source: Path, includes: list[str]) -> subprocess.CompletedProcess:
    """``source`` (and the header it includes) through the compiler's front end only."""
    args = [compiler(), "-std=c++17", "-fsyntax-only", "-Wall", "-Werror", f"-I{source.parent}"]
    return subprocess.run([*args, *(f"-I{d}" for d in includes), str(source)], check=False, capture_output=True, text=True)


def build_and_run(headers: list[Path], sources: list[Path], folder: Path) -> dict[str, dict]:
    """A program that includes every header, links every source, registers each model's ops in
    its own resolver (the stub's) and prints what it registered and the array's length: returns
    {symbol prefix: {"status": 0 = kTfLiteOk, "registered": [method, ...], "length": bytes}}."""
    prefixes = [re.search(r"inline TfLiteStatus (\w+)_register_ops", h.read_text()).group(1) for h in headers]
    main = folder / "edgekit_main.cc"
    lines = [f'#include "{h.name}"' for h in headers] + ["#include <cstdio>", "int main() {"]
    for prefix in prefixes:
        lines += ["  {", f"    static {prefix}_op_resolver resolver;", f"    int status = {prefix}_register_ops(resolver);",
                  f'    std::printf("{prefix} %d %u", status, {prefix}_model_len);',
                  '    for (unsigned int i = 0; i < resolver.registered(); ++i) std::printf(" %s", resolver.name(i));',
                  '    std::printf("\\n");', "  }"]
    main.write_text("\n".join([*lines, "  return 0;", "}", ""]))
    program = folder / "edgekit_main"
    dirs = {str(p.parent) for p in [*headers, *sources]}
    done = subprocess.run([compiler(), "-std=c++17", "-Wall", "-Werror", f"-I{STUB}", *(f"-I{d}" for d in dirs),
                           str(main), *map(str, sources), "-o", str(program)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = subprocess.run([str(program)], check=True, capture_output=True, text=True)
    out = {}
    for line in ran.stdout.splitlines():
        prefix, status, length, *registered = line.split(" ")
        out[prefix] = {"status": int(status), "length": int(length), "registered": registered}
    return out


def header_adds(header: Path) -> list[str]:
    """The Add calls of a generated header's register function, in order."""
    return re.findall(r"if \(resolver\.(Add\w+)\(\) != kTfLiteOk\)", header.read_text())


def resolver_count(header: Path) -> int:
    return int(re.search(r"MicroMutableOpResolver<(\d+)>", header.read_text()).group(1))
