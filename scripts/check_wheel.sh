#!/usr/bin/env bash
# Build gancli's wheel and use it the way a user meets it: installed with no extra (the light deploy
# install: no torch) into a fresh virtual environment outside the checkout (dependencies from the package
# registry), and run from a folder outside the checkout: it generates, serves over HTTP, and train says
# which extra it needs. Fails on the first thing that is wrong; prints the wheel's and the venv's size.
#
# Usage: bash scripts/check_wheel.sh          (PYTHON=python3.12 to pick the interpreter)
#        KEEP=1 bash scripts/check_wheel.sh   (keep the temporary folder and print where it is)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/gancli-wheel.XXXXXX")
if [[ -n "${KEEP:-}" ]]; then echo "check_wheel: working in $work"; else trap 'rm -rf "$work"' EXIT; fi
step() { echo "check_wheel: $*"; }
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }

# 1. A copy of the project's files (what git tracks, plus new files it does not ignore), so that
#    no build/ or egg-info left in the checkout can leak stale modules into the wheel.
mkdir "$work/src" "$work/dist" "$work/run"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z -co --exclude-standard \
     | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$work/src"
else
  tar -C "$repo" --exclude=.git --exclude=.venv --exclude=build --exclude='*.egg-info' -cf - . | tar -xf - -C "$work/src"
fi

# 2. A fresh virtual environment outside the checkout; its pip builds the wheel, then installs it.
step "fresh virtual environment in $work/venv"
"$python" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip)
"${pip[@]}" wheel -q --no-deps -w "$work/dist" "$work/src" 2>&1 | sed "/^WARNING: Location 'file:/d"
wheel=$(ls "$work/dist"/gancli-*.whl)
bytes=$(stat -c %s "$wheel")
step "built $(basename "$wheel"): $((bytes / 1000000)) MB ($bytes bytes)"

# 3. The wheel holds one top-level package, gancli, with its shipped models, and nothing else of
#    the repository (no tests, benchmarks or scripts).
"$work/venv/bin/python" - "$wheel" "$work/src" <<'EOF' || fail "wheel contents"
import pathlib, sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
# every module of the repository is in the wheel under gancli/ (a new subpackage must be listed in
# pyproject.toml's packages), except the folders that are not part of the package
src = pathlib.Path(sys.argv[2])
modules = {"gancli/" + p.relative_to(src).as_posix() for p in src.rglob("*.py")
           if p.relative_to(src).parts[0] not in ("tests", "benchmarks", "scripts", ".ci", "build")}
assert modules <= set(names), f"modules missing from the wheel (list their package in pyproject.toml): {sorted(modules - set(names))}"
top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
assert top == {"gancli"}, f"top-level entries besides gancli: {sorted(top - {'gancli'})}"
stray = [n for n in names if any(part in ("tests", "benchmarks", "scripts", ".ci") for part in n.split("/")[:-1])]
assert not stray, f"not for the wheel: {stray[:5]}"
for needed in ("gancli/__init__.py", "gancli/cli.py", "gancli/runtime/generate.py", "gancli/models/__init__.py",
               "gancli/models/cats-dcgan/generator-uint8.onnx", "gancli/models/mnist-dcgan/generator.json",
               "gancli/models/mnist-classifier/classifier.safetensors", "gancli/runtime/serve/app.py",
               "gancli/runtime/serve/gallery.html"):
    assert needed in names, f"{needed} is missing from the wheel"
top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
assert zipfile.ZipFile(sys.argv[1]).read(top_level).split() == [b"gancli"], "top_level.txt names more than gancli"
EOF

step "pip install $(basename "$wheel") (no extra; dependencies from the registry)"
"${pip[@]}" install -q "$wheel" 2>&1 | sed "/^WARNING: Location 'file:/d"  # this machine's pip config is noisy
step "venv with the light install: $(du -sm "$work/venv" | cut -f1) MB"

# Everything from here runs outside the checkout: a python started in it would see its egg-info.
cd "$work/run"
export PATH="$work/venv/bin:$PATH"

# 4. site-packages holds gancli and no other top-level module of this project.
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
for name in gan export runtime cli cli.py models tests benchmarks scripts; do
  [[ ! -e "$site/$name" ]] || fail "site-packages holds a top-level $name"
done
"$work/venv/bin/python" - <<'EOF' || fail "installed files"
from importlib import metadata
files = metadata.distribution("gancli").files
top = {f.parts[0] for f in files if not f.parts[0].endswith(".dist-info") and f.parts[0] != ".."}
assert top == {"gancli"}, f"gancli installed top-level {sorted(top)}"
EOF

# 5. Use it as a user would.
version=$(gancli --version)
[[ "$version" =~ ^gancli\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "gancli --version printed '$version'"
step "$version"
for module in torch torchvision; do
  "$work/venv/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is not None)" \
    || fail "the light install brought $module"
done
step "no torch, no torchvision"
gancli generate -n 100 --out samples/
count=$(find samples -name '*.png' | wc -l)
[[ "$count" == 100 ]] || fail "gancli generate -n 100 wrote $count PNGs"
[[ -f samples/manifest.jsonl ]] || fail "no samples/manifest.jsonl"
python -c "
import gancli, pathlib
assert pathlib.Path(gancli.__file__).is_relative_to('$site'), gancli.__file__
a = gancli.generate_array('mnist-dcgan', 8)
assert a.shape == (8, 28, 28, 1) and a.dtype == 'uint8', (a.shape, a.dtype)
print('check_wheel: gancli.generate_array(\'mnist-dcgan\', 8) ->', a.shape, a.dtype)
"

# 6. Serve over HTTP: an image of cats-dcgan by index is the same pixels as generate's file; SIGTERM exits 0.
gancli serve --model cats-dcgan --port 0 >serve.out 2>serve.err &
server=$!
for _ in $(seq 300); do grep -q "http://" serve.out && break; kill -0 $server 2>/dev/null || break; sleep 0.2; done
url=$(grep -o "http://127.0.0.1:[0-9]*" serve.out) || fail "gancli serve did not start: $(cat serve.out serve.err)"
curl -sf -o served.png "$url/v1/models/cats-dcgan/images/0.png" || fail "curl $url/v1/models/cats-dcgan/images/0.png"
curl -sf "$url/readyz" >/dev/null || fail "$url/readyz"
python -c "
import cv2, glob, numpy as np, sys
served, made = cv2.imread('served.png'), cv2.imread(sorted(glob.glob('samples/*/*.png'))[0])
sys.exit(not np.array_equal(served, made))" || fail "the served image 0 is not generate's image 0"
kill -TERM $server
wait $server || fail "gancli serve exited $? on SIGTERM"
step "gancli serve: $url/v1/models/cats-dcgan/images/0.png is generate's image 0; SIGTERM exits 0"

# 7. Training needs the extra, and says so in one line.
if gancli train --dataset mnist --n-epochs 1 >train.out 2>&1; then fail "gancli train ran without torch"; fi
grep -q "pip install 'gancli\[train\]'" train.out && [[ $(wc -l <train.out) == 1 ]] \
  || fail "gancli train without torch printed: $(cat train.out)"
step "gancli train without torch: $(cat train.out)"
step "passed: the light wheel installs outside the checkout without torch, generates 100 PNGs, serves them over HTTP and the Python API"
