#!/usr/bin/env bash
# Build (once) the arm64 Debian root that `edgecv verify-arm` (and tests/test_arm.py) run in.
#
#   scripts/build_arm_root.sh            # prints the root's path on its last line
#
# Idempotent: a finished root is reused; else the cached tar.zst is unpacked (~1 s); else it is
# built: `debootstrap --foreign` (download + unpack of arm64 bookworm minbase, ~35 s) and the
# .debs of python3 unpacked with `dpkg-deb -x` on the host (~10 s). No second stage, no chroot, no
# binfmt_misc: verify-arm runs `qemu-aarch64-static -L ROOT ROOT/usr/bin/python3.11`, which needs
# the files only (no maintainer script matters for python3 + wheels). EDGECV_ARM_FULL=1 runs the
# real second stage under qemu through binfmt_misc instead (~5 min; a configured root that can be
# chroot-ed into, e.g. for an emulated ssh board). Needs root (debootstrap) for the build only.
# Where: $EDGECV_ARM_ROOT, else $EDGECV_CACHE/arm/root (default ~/.cache/edgecv/arm/root),
# never inside the repository. Python packages (the aarch64 wheels of ai-edge-litert and numpy at
# the versions of constraints.txt) go to ROOT/opt/edgecv/site: pip downloads them on the host with
# --platform manylinux2014_aarch64 (no pip runs under emulation).
#
#   scripts/build_arm_root.sh --pte      # also the stack .pte files need (~4.7 GB, ~1 min)
#
# adds ROOT/opt/edgecv/pte-site: executorch's aarch64 wheel at the constraints' version and the torch it
# links (libtorch), with torch's own dependencies as pip resolves them for aarch64. PyPI's aarch64 torch is
# the CUDA build: its libraries link the nvidia CUDA runtime libraries, so they come along (about 4 GB) only
# for the dynamic linker; nothing here has a GPU and nothing runs on one.
# The two traps of docs/export.md are handled here: a fake ARM /proc/cpuinfo and
# /sys/devices/system/cpu/{possible,present} inside the root (without them LiteRT silently skips
# XNNPACK; with the host's x86 cpuinfo it crashes), and QEMU_CPU=max,sme=off at run time.
set -euo pipefail
CACHE="${EDGECV_CACHE:-$HOME/.cache/edgecv}/arm"
ROOT="${EDGECV_ARM_ROOT:-$CACHE/root}"
SUITE=bookworm
VERSION=2  # bump when the root's contents change: the tarball name carries it
TAR="$CACHE/debian-$SUITE-arm64-v$VERSION.tar.zst"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PIP="${PIP:-$REPO/.venv/bin/python -m pip}"
LITERT="$(grep -i '^ai-edge-litert==' "$REPO/constraints.txt" | cut -d= -f3)"
NUMPY="$(grep -i '^numpy==' "$REPO/constraints.txt" | cut -d= -f3)"
FULL="${EDGECV_ARM_FULL:-0}"
WANT_PTE=0
for a in "$@"; do
  case "$a" in --pte) WANT_PTE=1;; *) echo "error: unknown option $a (only --pte)" >&2; exit 2;; esac
done
pin() { grep -i "^$1==" "$REPO/constraints.txt" | cut -d= -f3; }
ARM_PLATFORMS="--platform manylinux2014_aarch64"
for v in $(seq 17 28); do ARM_PLATFORMS+=" --platform manylinux_2_${v}_aarch64"; done
case "$ROOT" in "$REPO"/*) echo "error: EDGECV_ARM_ROOT must be outside the repository" >&2; exit 2;; esac
mkdir -p "$CACHE"
log() { echo "build_arm_root: $*" >&2; }

need() {  # install Debian packages when a tool is missing (root only)
  local missing=""
  command -v qemu-aarch64-static >/dev/null || missing+=" qemu-user-static"
  command -v debootstrap >/dev/null || missing+=" debootstrap"
  [ -z "$missing" ] && return 0
  [ "$(id -u)" = 0 ] || { echo "error: needs$missing: sudo apt-get install$missing" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; }
}

binfmt() {  # register qemu-aarch64 with the kernel so chroot can exec arm64 binaries
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
}

fake_cpu() {  # Neoverse-N1 identity (matches QEMU_CPU=max,sme=off's features closely enough for cpuinfo)
  local n; n=$(nproc)
  mkdir -p "$ROOT/proc" "$ROOT/sys/devices/system/cpu"
  : > "$ROOT/proc/cpuinfo"
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i" >> "$ROOT/proc/cpuinfo"
  done
  echo "0-$((n - 1))" > "$ROOT/sys/devices/system/cpu/possible"
  echo "0-$((n - 1))" > "$ROOT/sys/devices/system/cpu/present"
}

site() {  # aarch64 wheels, downloaded and unpacked on the host
  $PIP install -q --no-deps --target "$ROOT/opt/edgecv/site" --only-binary=:all: $ARM_PLATFORMS \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    "ai-edge-litert==$LITERT" "numpy==$NUMPY" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  [ -d "$ROOT/opt/edgecv/site/ai_edge_litert" ] || { echo "error: pip could not fetch the aarch64 ai-edge-litert==$LITERT wheel" >&2; exit 3; }
}

pte_site() {  # torch (with its aarch64 dependencies) + executorch and the pure-Python modules its runtime imports
  local ps="$ROOT/opt/edgecv/pte-site"
  [ -f "$ps/.edgecv-pte-ready" ] && { log "pte stack ready"; return 0; }
  rm -rf "$ps.partial"
  log "aarch64 torch==$(pin torch) + executorch==$(pin executorch) (~4.7 GB)"
  local args=(--target "$ps.partial" --only-binary=:all: $ARM_PLATFORMS --python-version 3.11 --implementation cp
              --abi cp311 --abi abi3 --abi none)
  { $PIP install -q "${args[@]}" "torch==$(pin torch)" \
    && $PIP install -q --no-deps "${args[@]}" --upgrade "executorch==$(pin executorch)" "ruamel.yaml==$(pin ruamel.yaml)" \
         "flatbuffers==$(pin flatbuffers)" "tabulate==$(pin tabulate)"; } 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  [ -d "$ps.partial/executorch/extension/pybindings" ] && [ -d "$ps.partial/torch/lib" ] \
    || { echo "error: pip could not fetch the aarch64 torch/executorch wheels" >&2; exit 3; }
  # the MIDR register file oneDNN and ExecuTorch's cpuinfo read (Neoverse-N1, as proc/cpuinfo says)
  local i n; n=$(nproc)
  for ((i = 0; i < n; i++)); do
    mkdir -p "$ROOT/sys/devices/system/cpu/cpu$i/regs/identification"
    echo 0x00000000413fd0c1 > "$ROOT/sys/devices/system/cpu/cpu$i/regs/identification/midr_el1"
  done
  touch "$ps.partial/.edgecv-pte-ready"
  rm -rf "$ps"; mv "$ps.partial" "$ps"
}

if [ -f "$ROOT/.edgecv-root-v$VERSION" ]; then
  log "root ready"
elif [ -f "$TAR" ]; then
  log "unpacking $TAR"
  rm -rf "$ROOT"; mkdir -p "$ROOT"
  zstd -dc "$TAR" | tar -x -C "$ROOT"
else
  need
  [ "$(id -u)" = 0 ] || { echo "error: building the arm64 root needs root (debootstrap); or set EDGECV_ARM_ROOT to a prebuilt one" >&2; exit 2; }
  rm -rf "$ROOT.partial"
  log "debootstrap $SUITE arm64 (first stage) from $MIRROR"
  debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 "$SUITE" "$ROOT.partial" "$MIRROR" >&2
  if [ "$FULL" = 1 ]; then
    binfmt
    log "second stage under qemu-user (a few minutes)"
    QEMU_CPU=max,sme=off chroot "$ROOT.partial" /debootstrap/debootstrap --second-stage >&2
  else  # the files of every downloaded package, unconfigured: enough for qemu -L ROOT python3.11
    for deb in "$ROOT.partial"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$ROOT.partial"; done
  fi
  rm -rf "$ROOT.partial/var/cache/apt/archives/"*.deb "$ROOT.partial/var/lib/apt/lists/"*
  ROOT_FINAL="$ROOT"; ROOT="$ROOT.partial"
  site
  fake_cpu
  touch "$ROOT/.edgecv-root-v$VERSION"
  ROOT="$ROOT_FINAL"
  rm -rf "$ROOT"; mv "$ROOT.partial" "$ROOT"
  if command -v zstd >/dev/null; then
    log "caching as $TAR"
    tar -C "$ROOT" -cf - . | zstd -q -T0 -10 -o "$TAR.tmp" && mv "$TAR.tmp" "$TAR"
  fi
fi
[ -x "$ROOT/usr/bin/python3.11" ] || { echo "error: $ROOT has no usr/bin/python3.11 (remove it and rerun)" >&2; exit 3; }
[ "$WANT_PTE" = 1 ] && pte_site
echo "$ROOT"
